"""Issue 18, races in the output protocol (io/atomic.py): two processes writing the same
output round after round must never shorten a committed file, never remove the other's
partial file, and the loser is refused ("another pythia-data is writing"); a command takes
its output's lock before its slow start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from tests.conftest import subprocess_env

_WRITER = r"""
import json, os, struct, sys, zlib
from pythia_data.errors import OutputError
from pythia_data.io.atomic import AtomicOutput

path, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stats = {"committed": 0, "refused": 0, "errors": [], "bad_reads": 0, "reads": 0}
for r in range(rounds):
    n = 1000 + (r * 7919 + me * 104729) % 60000
    payload = bytes([(me * 31 + r) % 251]) * n
    blob = struct.pack("<QI", n, zlib.crc32(payload)) + payload
    try:
        out = AtomicOutput(path)
    except OutputError as exc:
        if "another pythia-data is writing" in str(exc):
            stats["refused"] += 1
        else:
            stats["errors"].append(str(exc))
        out = None
    if out is not None:
        try:
            out.write(blob[: len(blob) // 2])
            out.write(blob[len(blob) // 2 :])
            out.commit(sync=False)
            stats["committed"] += 1
        except OutputError as exc:
            stats["errors"].append(str(exc))
    # every read of the final name sees one whole committed file
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        continue
    stats["reads"] += 1
    ok = len(data) >= 12
    if ok:
        m, crc = struct.unpack("<QI", data[:12])
        ok = len(data) == 12 + m and zlib.crc32(data[12:]) == crc
    stats["bad_reads"] += not ok
print(json.dumps(stats))
"""


def _stress(tmp_path, rounds: int, writers: int = 2) -> list[dict]:
    path = tmp_path / "out.bin"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(k), str(rounds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env()) for k in range(writers)]
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        stats.append(json.loads(out))
    for s in stats:
        assert s["errors"] == [], s["errors"][:5]
        assert s["bad_reads"] == 0, s
    for s in stats:  # every attempt either committed or was refused at once
        assert s["committed"] + s["refused"] == rounds, s
    assert sum(s["committed"] for s in stats) > 0
    # nothing left behind but the committed file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    return stats


def test_two_writers_never_corrupt_each_other(tmp_path):
    _stress(tmp_path, rounds=150)


@pytest.mark.slow
def test_two_writers_stress_many_rounds(tmp_path):
    """The fuzz campaign's race: 2 processes x 5,000 rounds (and 4 x 1,000)."""
    _stress(tmp_path, rounds=5000)
    _stress(tmp_path, rounds=1000, writers=4)


_HOLDER = """
import sys
from pythia_data.io.atomic import AtomicOutput
outs = [AtomicOutput(p) for p in sys.argv[1:]]
print("locked", flush=True)
sys.stdin.read()
for o in outs:
    o.abort()
"""


@pytest.mark.parametrize("command", ["tokenize", "batches", "detokenize"])
def test_second_writer_is_refused_before_its_start_up(tmp_path, command):
    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "a"}\n')
    if command == "tokenize":
        targets = [tmp_path / "o_text_document.bin", tmp_path / "o_text_document.idx"]
        # a tokenizer that does not exist: loading it would fail after the lock
        args = ["tokenize", src, "-o", tmp_path / "o", "-t", tmp_path / "nope.json"]
    elif command == "batches":
        targets = [tmp_path / "x.npy"]
        # no such dataset: opening it comes after the lock
        args = ["batches", tmp_path / "missing", "-s", "0", "-o", targets[0], "--force"]
    else:
        targets = [tmp_path / "d.jsonl"]
        args = ["detokenize", tmp_path / "missing", "-o", targets[0], "-t",
                tmp_path / "nope.json"]
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, *map(str, targets)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(cli, [str(a) for a in args])
        assert res.exit_code == 2, res.output
        assert res.output.strip() == f"pythia-data: error: another pythia-data is writing " \
                                     f"{targets[0]}"
        assert (tmp_path / f"{targets[0].name}.partial").exists()  # the holder's, untouched
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


def test_a_claimed_output_is_opened_under_any_spelling(tmp_path, monkeypatch):
    from pythia_data.io.atomic import AtomicOutput, claim_outputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with claim_outputs(["sub/x.bin"]):
        with AtomicOutput("./sub/../sub/x.bin") as out:  # the same file: the held lock
            out.write(b"ok")
    assert (tmp_path / "sub" / "x.bin").read_bytes() == b"ok"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.bin"]


def test_ctrl_c_while_claimed_locks_are_released_removes_every_lock(tmp_path, monkeypatch):
    """A Ctrl-C that lands while a command lets go of its claimed outputs (the dataset
    already committed) is delivered after the last lock file is gone: found by the slow
    Ctrl-C campaign, which once left ``.X.idx.pythia-lock`` beside a complete dataset."""
    import os
    import signal

    from pythia_data.io import atomic

    release = atomic.OutputLock.release
    calls = []

    def release_then_ctrl_c(self):
        release(self)
        calls.append(self.final)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode

    monkeypatch.setattr(atomic.OutputLock, "release", release_then_ctrl_c)
    # Python's own handler, even where the test process was started with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic.claim_outputs([tmp_path / "x.bin", tmp_path / "x.idx"]):
                (tmp_path / "x.bin").write_bytes(b"b")
                (tmp_path / "x.idx").write_bytes(b"i")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx"]
