"""The click group and the one place where errors become exit codes.

Every failure the user can cause ends as one line on stderr and a non-zero exit code:
2 for bad input or usage, 1 for a failed verification (``PythiaDataError.exit_code``),
130 when interrupted. A closed stdout pipe (``| head``) ends quietly with 0.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from pythia_data.errors import PythiaDataError
from pythia_data.io.atomic import abort_all


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _quiet_stdout_close() -> None:
    # Point stdout at devnull so the interpreter's final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (ours and libraries') as one ``pythia-data: warning:`` line on
    stderr, without the source file, line and code that Python prints by default."""
    try:
        click.echo(f"pythia-data: warning: {_one_line(str(message))}", err=True)
    except (OSError, ValueError):  # pragma: no cover - stderr closed
        pass


def _fail(message: str, code: int) -> None:
    click.echo(f"pythia-data: {message}", err=True)
    sys.exit(code)


def _redeliver_interrupt(previous):
    """An unraisable-exception hook that does not let a Ctrl-C be swallowed.

    A KeyboardInterrupt raised inside a callback that C code called (numba's compiled-kernel
    cache is read through an llvmlite ctypes callback on every first kernel call) or inside a
    ``__del__`` cannot propagate: Python prints "Exception ignored ..." with a traceback and
    goes on, so a Ctrl-C during kernel loading used to be lost and the command ran to the
    end. This hook prints nothing for it and sends SIGINT again from a short-lived thread a
    moment later (a signal raised inside the hook would be handled, and swallowed, inside
    the hook itself), so the interrupt reaches the command once the C code returns, or is
    deferred like any other inside a block that defers interrupts. Other unraisable
    exceptions go to the previous hook."""
    import signal
    import threading
    import time

    def again():
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    def hook(unraisable):
        if unraisable.exc_type is KeyboardInterrupt or \
                isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Thread(target=again, name="pythia-data-sigint", daemon=True).start()
            return
        previous(unraisable)

    return hook


# click >= 8.2 raises this for a group called without a command (8.1 prints the help itself)
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _PipeClosed(Exception):
    """stdout's reader went away (``| head``). Raised in place of click's own handling,
    which would turn EPIPE into exit code 1 before ``main`` could end quietly."""


class PythiaGroup(click.Group):
    """A click group whose ``main`` maps every expected failure to one line + exit code
    (also under click's ``CliRunner``, which calls ``main``).

    Commands named in ``lazy_commands`` (name -> module under ``pythia_data.cli``) are
    registered by importing their module on first use, so a command pays only for the
    libraries it needs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = {}

    def _load(self, module: str) -> None:
        import importlib

        importlib.import_module(f"pythia_data.cli.{module}")

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self._load(self.lazy_commands[cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        for module in sorted(set(self.lazy_commands.values())):
            self._load(module)
        return super().list_commands(ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import warnings

        shown, unraisable = warnings.showwarning, sys.unraisablehook
        warnings.showwarning = _show_warning
        sys.unraisablehook = _redeliver_interrupt(unraisable)
        try:
            self._main(args, prog_name, complete_var, **extra)
        finally:
            warnings.showwarning = shown
            sys.unraisablehook = unraisable

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            try:
                rv = super().main(
                    args=args, prog_name=prog_name or "pythia-data",
                    complete_var=complete_var, standalone_mode=False, **extra,
                )
            except BaseException:
                # outputs opened but never committed (Ctrl-C between opening an output
                # and entering the block that would abort it): remove their partial files
                abort_all()
                raise
        except click.exceptions.Abort:
            _stop_children()
            _fail("interrupted", 130)
        except _NoArgsIsHelp as exc:
            # bare `pythia-data` or `pythia-data order`: the help, as asked for (exit 0)
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            _fail(f"error: {_one_line(exc.format_message())}{hint}", 2)
        except PythiaDataError as exc:
            _fail(f"error: {_one_line(str(exc) or type(exc).__name__)}", exc.exit_code)
        except _PipeClosed:
            _quiet_stdout_close()
            sys.exit(0)
        except KeyboardInterrupt:
            _stop_children()
            _fail("interrupted", 130)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                _quiet_stdout_close()
                sys.exit(0)
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            _fail(f"error: {_one_line(exc.strerror or str(exc))}{where}", 2)
        except MemoryError:
            _fail("error: out of memory", 2)
        except RecursionError:  # a safety net: readers turn deep nesting into InputError
            _fail("error: input nested too deeply to read", 2)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise _PipeClosed() from None
            raise


@click.group(cls=PythiaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pythia-data")
def cli() -> None:
    """pythia-data: the exact token data Pythia was trained on.

    Every command takes -h/--help. Outputs are written atomically; an existing file is
    replaced only with --force; -q means no progress bars and no notes on stderr.

    \b
    Examples:
      pythia-data demo
      pythia-data checksum pythia_deduped_pile_idxmaps/
      pythia-data unshard pythia_deduped_pile_idxmaps/
      pythia-data batches pile/document -s 0 -e 9 -o first10.npy
    """


def run_script(func, *args) -> int:
    """Run a drop-in script's ``main`` so that a closed stdout (``| head``) ends quietly
    with status 0 instead of a BrokenPipeError traceback (stdout is flushed here, inside
    the guard, not at interpreter exit)."""
    try:
        code = func(*args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout_close()
        return 0
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _quiet_stdout_close()
        return 0
    return code


def main(argv: list[str] | None = None) -> None:
    """The CLI (the console scripts call it through :func:`console_main`).

    After a Ctrl-C the command has removed its partial outputs and said "interrupted";
    it then leaves at once (``os._exit``) rather than through the interpreter's exit,
    which joins every non-daemon thread and executor: a Ctrl-C'd ``tokenize`` was seen
    to wait there for good (twice in 25-try CI campaigns, not reproduced by hand)."""
    try:
        cli.main(args=argv, prog_name="pythia-data")
    except SystemExit as exc:
        if exc.code == 130:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                    pass
            os._exit(130)
        raise


def console_main() -> None:
    """The console scripts' entry (``pythia-data``, ``python -m pythia_data``): :func:`main`,
    then a quick exit. The interpreter's own exit tears down every module and collects
    every object - with numba loaded that is ~0.25 s of a command's run, more than some
    commands take. So once the command is over this does what that exit does for the
    outside world - waits for non-daemon threads, runs the ``atexit`` callbacks, flushes
    stdout and stderr - and then leaves with ``os._exit``. Anything unusual (stdout cannot
    be flushed, a Python without ``threading._shutdown``, a profiler or tracer that reports
    after the program) takes the interpreter's exit."""
    # the package's kernels need no third-party numba extension (see pythia_data.kernels)
    os.environ.setdefault("PYTHIA_DATA_NUMBA_EXTENSIONS", "0")
    one_blas_thread()  # before anything imports numpy (pythia_data.jobs does)
    from pythia_data.jobs.startup import tune

    tune()  # (see there: the cyclic GC and numba's set-up in a command's process)
    try:
        main()
    except SystemExit as exc:
        _quick_exit(exc)
        raise
    _quick_exit(SystemExit(0))


def one_blas_thread() -> bool:
    """In a command's process, before numpy is imported: OpenBLAS (numpy's wheels) with one
    thread, unless the user set ``OPENBLAS_NUM_THREADS``. At import it otherwise starts a
    thread per core that spins ~0.1 s of CPU for nothing (no command does linear algebra):
    a one-line ``tokenize`` 1.04 -> 0.92 CPU s, the 48 MB one 2.64 -> 2.43 (medians of 6-8
    runs, 2 cores). Child processes (the local executor's workers) inherit it. True when
    set here; a process that imported numpy already is left as it is."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


def _exit_status(code) -> int | None:
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    return None  # a message: the interpreter prints it and exits with 1


def _flushed() -> bool:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: leave it to the interpreter
            return False
    return True


def _quick_exit(exc: SystemExit) -> None:
    """``os._exit`` with ``exc``'s status after the outward steps of the interpreter's exit;
    returns (the caller re-raises ``exc``) when it cannot be done safely."""
    import threading

    status = _exit_status(exc.code)
    shutdown = getattr(threading, "_shutdown", None)
    traced = sys.getprofile() is not None or sys.gettrace() is not None  # e.g. -m cProfile
    if status is None or shutdown is None or traced or not _flushed():
        return
    try:
        shutdown()  # joins non-daemon threads (and executors' workers), as exit does
        import atexit

        atexit._run_exitfuncs()
    except KeyboardInterrupt:
        status = 130
    _flushed()
    os._exit(status)


def _stop_children() -> None:
    """Kill this process's worker processes (a local executor's pool) on Ctrl-C. The
    driver only gets the SIGINT; at exit, multiprocessing joins every child it started,
    and a worker caught half-way through its start (or still in a unit) kept a
    Ctrl-C'd command waiting there. Their units are redone by a rerun."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    try:
        children = mp.active_children()
    except Exception:  # noqa: BLE001 - best effort on the way out
        return
    for proc in children:
        try:
            proc.kill()
        except Exception:  # noqa: BLE001
            pass
