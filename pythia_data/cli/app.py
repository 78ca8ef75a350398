"""The click group and the one place where errors become exit codes."""

from __future__ import annotations

import errno
import os
import sys

import click

from pythia_data.errors import PythiaDataError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pythia-data")
def cli() -> None:
    """pythia-data: the exact token data Pythia was trained on."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())


def _quiet_stdout_close() -> None:
    # A closed pipe (`| head`) ends quietly: point stdout at devnull so the
    # interpreter's final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, map errors to one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="pythia-data", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pythia-data: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"pythia-data: {_one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except PythiaDataError as exc:
        click.echo(f"pythia-data: error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _quiet_stdout_close()
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("pythia-data: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _quiet_stdout_close()
            sys.exit(0)
        name = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        click.echo(f"pythia-data: error: {exc.strerror or exc}{name}", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("pythia-data: error: out of memory", err=True)
        sys.exit(2)
    sys.exit(0)
