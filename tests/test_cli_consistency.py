"""Issue 8, edges 5 and 9: the commands agree with each other.

Binary output is refused on a terminal; an unknown output suffix is an error; --force,
-q and --json mean the same everywhere; bare groups print their help; every --help has
examples; a failed verification is one bounded line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.batches import infer_format, known_suffixes, open_sink
from pythia_data.cli import COMMANDS, cli
from pythia_data.cli.options import QUIET_HELP
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.errors import UsageError
from tests.conftest import subprocess_env

SHAPE = ["--batch-size", "3", "--seq-length", "6"]


@pytest.fixture
def pre(tmp_path):
    docs = [np.arange(7) + 100 * s for s in range(24)]
    return write_dataset(tmp_path / "pre", docs, dtype=np.uint16), np.stack(docs)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def pd(*args):
    return [sys.executable, "-m", "pythia_data", *map(str, args)]


def all_commands():
    """(path, command) for every leaf command, subcommands included."""
    ctx = click.Context(cli)
    out = []
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                out.append(((name, sub), cmd.get_command(ctx, sub)))
        else:
            out.append(((name,), cmd))
    return out


def option(cmd, flag):
    return next((p for p in cmd.params if flag in getattr(p, "opts", [])), None)


# ------------------------------------------------------------------ edge 5: TTY, suffixes


@pytest.mark.parametrize("name", ["x.dat", "x.NPZ", "x", "out/data.csv"])
def test_unknown_suffix_is_an_error_listing_the_known_ones(tmp_path, pre, name):
    prefix, _ = pre
    target = tmp_path / name
    result = run("batches", prefix, "-s", 0, *SHAPE, "-o", target)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    for suffix in (".npy", ".bin", ".jsonl", ".raw"):
        assert suffix in result.stderr
    assert "--format" in result.stderr
    assert not target.exists()
    ok = run("batches", prefix, "-s", 0, *SHAPE, "-o", target, "--format", "raw")
    assert ok.exit_code == 0, ok.output
    assert target.stat().st_size == 3 * 7 * 2


def test_infer_format_rules(tmp_path):
    assert infer_format("a.npy") == "npy" and infer_format("A.JSONL") == "jsonl"
    assert infer_format("-") == "raw" and infer_format("/dev/null") == "raw"
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert infer_format(fifo) == "raw"
    with pytest.raises(UsageError, match=r"\.tokens"):
        infer_format(tmp_path / "x.dat")
    assert ".npy" in known_suffixes() and ".bin" in known_suffixes()


class _Terminal:
    """A stream that says it is a terminal (and records what reaches it)."""

    def __init__(self):
        self.data = b""

    def isatty(self):
        return True

    def write(self, data):
        self.data += bytes(data)

    def flush(self):
        pass


@pytest.mark.parametrize("fmt", ["npy", "raw"])
def test_binary_sink_refused_on_a_terminal(fmt):
    term = _Terminal()
    with pytest.raises(UsageError, match="terminal"):
        open_sink(fmt, "-", dtype=np.uint16, shape=(1, 2), stream=term)
    assert term.data == b""  # not even the npy header
    sink = open_sink("jsonl", "-", dtype=np.uint16, stream=term)
    sink.write(np.array([[1, 2]], dtype=np.uint16))
    sink.close()
    assert term.data == b'{"tokens": [1, 2]}\n'
    sink = open_sink("raw", "-", dtype=np.uint16, stream=term, allow_terminal=True)
    sink.close()


def _on_a_pty(args) -> tuple[int, bytes, str]:
    main, child = os.openpty()
    try:
        proc = subprocess.run(pd(*args), stdout=child, stderr=subprocess.PIPE, text=False,
                              env=subprocess_env(), timeout=120)
    finally:
        os.close(child)
    chunks = []
    os.set_blocking(main, False)
    while True:
        try:
            piece = os.read(main, 65536)
        except OSError:  # EAGAIN (nothing left) or EIO (child side closed)
            break
        if not piece:
            break
        chunks.append(piece)
    os.close(main)
    return proc.returncode, b"".join(chunks), proc.stderr.decode()


def test_tty_refusal_in_a_real_terminal(pre):
    prefix, _ = pre
    code, shown, err = _on_a_pty(["batches", prefix, "-s", 0, *SHAPE])
    assert code == 2
    assert err.count("\n") == 1 and "terminal" in err and "redirect" in err
    assert shown == b""
    code, shown, err = _on_a_pty(["batches", prefix, "-s", 0, *SHAPE, "--format", "jsonl"])
    assert code == 0, err
    assert b'"tokens": [0, 1, 2' in shown


# ------------------------------------------------------------------ edge 9: consistency


def test_batches_refuses_existing_output_without_force(tmp_path, pre):
    prefix, full = pre
    for name in ("x.npy", "x.raw", "x.jsonl", "x.bin"):
        out = tmp_path / name
        assert run("batches", prefix, "-s", 0, *SHAPE, "-o", out).exit_code == 0
        before = out.read_bytes()
        again = run("batches", prefix, "-s", 1, *SHAPE, "-o", out)
        assert again.exit_code == 2 and "--force" in again.stderr and name in again.stderr
        assert out.read_bytes() == before
        forced = run("batches", prefix, "-s", 1, *SHAPE, "-o", out, "--force")
        assert forced.exit_code == 0, forced.output
        assert out.read_bytes() != before
    (tmp_path / "y.idx").write_bytes(b"")  # bin: either file of the pair counts
    refused = run("batches", prefix, "-s", 0, *SHAPE, "-o", tmp_path / "y.bin")
    assert refused.exit_code == 2 and "y.idx" in refused.stderr


def test_merge_force_json_quiet(tmp_path, pre):
    prefix, _ = pre
    out = tmp_path / "m"
    result = run("merge", out, prefix, prefix, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sequences"] == 48 and summary["tokens"] == 48 * 7
    assert summary["files"] == [f"{out}.bin", f"{out}.idx"]
    again = run("merge", out, prefix)
    assert again.exit_code == 2 and "--force" in again.stderr
    with IndexedDataset(out) as ds:
        assert len(ds) == 48
    forced = run("merge", out, prefix, "-q", "-f")
    assert forced.exit_code == 0 and "wrote" in forced.stdout and forced.stderr == ""
    with IndexedDataset(out) as ds:
        assert len(ds) == 24


def test_merge_shows_progress(tmp_path, pre, monkeypatch):
    prefix, _ = pre
    import pythia_data.cli.options as options

    monkeypatch.setattr(options, "show_progress", lambda quiet: not quiet)
    shown = run("merge", tmp_path / "m", prefix, prefix)
    assert shown.exit_code == 0 and "merge" in shown.stderr and "%" in shown.stderr
    quiet = run("merge", tmp_path / "m2", prefix, prefix, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_checksum_manifest_needs_force(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x")
    manifest = tmp_path / "m.sha256"
    manifest.write_text("keep me\n")
    refused = run("checksum", tmp_path / "a.bin", "--write-manifest", manifest)
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert manifest.read_text() == "keep me\n"
    forced = run("checksum", tmp_path / "a.bin", "--write-manifest", manifest, "--force")
    assert forced.exit_code == 0 and "a.bin" in manifest.read_text()


WRITERS = {("batches",), ("merge",), ("checksum",), ("unshard",), ("shard",), ("order", "build"),
           ("tokenize",), ("detokenize",), ("retokenize",)}


def test_force_quiet_json_are_the_same_everywhere():
    commands = dict(all_commands())
    for path in WRITERS:
        force = option(commands[path], "--force")
        assert force is not None, f"{' '.join(path)} has no --force"
        assert force.is_flag
    for path, cmd in commands.items():
        if path == ("demo",):
            continue
        quiet = option(cmd, "--quiet")
        if path != ("info",):
            assert quiet is not None, f"{' '.join(path)} has no --quiet"
        if quiet is not None:
            assert "-q" in quiet.opts and quiet.help == QUIET_HELP, path
        as_json = option(cmd, "--json")
        assert as_json is not None, f"{' '.join(path)} has no --json"
        assert as_json.help == option(commands[("info",)], "--json").help


@pytest.mark.parametrize("args", [[], ["order"]])
def test_bare_group_prints_help(args):
    result = run(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert "error" not in result.output
    assert "\nCommands:\n" in result.stdout


@pytest.mark.slow
def test_bare_command_real_subprocess():
    proc = subprocess.run(pd(), capture_output=True, text=True, env=subprocess_env(),
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: pythia-data") and "batches" in proc.stdout
    proc = subprocess.run(pd("order"), capture_output=True, text=True, env=subprocess_env(),
                          timeout=60)
    assert proc.returncode == 0 and "build" in proc.stdout and "verify" in proc.stdout


def test_every_help_has_examples():
    paths = [()] + [(name,) for name in COMMANDS] + [p for p, _ in all_commands()]
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        text = result.stdout
        assert "Examples:\n" in text, f"no examples in {' '.join(path)} --help"
        block = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(block) >= 2 or path == (), (path, block)
        assert all(line.strip().startswith("pythia-data ") for line in block), (path, block)
        if path:
            assert all(f"pythia-data {' '.join(path)}" in line for line in block), (path, block)


def test_verification_failed_line_is_bounded(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    names = [f"f{i:02d}.bin" for i in range(12)]
    for n in names:
        (folder / n).write_bytes(n.encode())
    (tmp_path / "m.txt").write_text("".join(f"{'0' * 64}  {n}\n" for n in names))
    result = run("checksum", folder, "-c", tmp_path / "m.txt")
    assert result.exit_code == 1
    line = [x for x in result.stderr.splitlines() if "verification failed" in x]
    assert len(line) == 1
    assert "12 of 12 files" in line[0] and "and 9 more" in line[0]
    assert sum(n in line[0] for n in names) == 3
    proc = subprocess.run(pd("checksum", folder, "-c", tmp_path / "m.txt", "-q"),
                          capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "and 9 more" in proc.stderr


def test_demo_equivalent_commands_rerun_after_the_demo(tmp_path):
    """The commands the demo prints still work once its outputs exist (--force where the
    command would otherwise refuse to replace them)."""
    import shlex

    from pythia_data.demo import run_demo

    commands = run_demo(tmp_path / "demo").commands
    for step in ("unshard", "batches", "order"):
        argv = shlex.split(commands[step])
        assert argv[0] == "pythia-data"
        result = run(*argv[1:], "-q")
        assert result.exit_code == 0, (step, result.output)
