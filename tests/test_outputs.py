"""Issue 8, edges 1, 8 and 15: every writer follows the one output rule, end to end.

Regular files are written atomically (FINAL.partial, fsync, rename; a symlink's target is
replaced, the link kept); FIFOs, devices and descriptor names (/dev/stdout, /dev/fd/N) are
streamed into, never replaced; new files honour the umask; every error names the file and
leaves no partial file; a second writer of the same output fails at once.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.io.atomic import AtomicGroup, AtomicOutput, is_stream_target
from tests.conftest import subprocess_env

SHAPE = ["--batch-size", "3", "--seq-length", "6"]
FORMATS = ["npy", "jsonl", "raw"]


@pytest.fixture
def pre(tmp_path):
    """Preshuffled: 8 iterations of 3 sequences of 7 tokens; token s*100+p."""
    docs = [np.arange(7) + 100 * s for s in range(24)]
    return write_dataset(tmp_path / "pre", docs, dtype=np.uint16), np.stack(docs)


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def pd(*args):
    """The pythia-data command line of a real subprocess."""
    return [sys.executable, "-m", "pythia_data", *map(str, args)]


def batches_args(prefix, *extra):
    return ["batches", prefix, "-s", 1, "-e", 2, *SHAPE, *extra]


def expected_raw(full):
    return full[3:9].astype("<u2").tobytes()


def no_partials(folder) -> list[str]:
    return [p for p in os.listdir(folder) if p.endswith(".partial")]


# ------------------------------------------------------------------ edge 1: write through


def test_dev_stdout_onto_a_redirected_file_is_written_through(tmp_path, pre):
    """`-o /dev/stdout > file`: the shell's file is written into (same inode), not replaced
    by a rename (which, as root, also clobbered /dev/stdout itself)."""
    prefix, full = pre
    target = tmp_path / "redirected.raw"
    target.write_bytes(b"old")
    inode = target.stat().st_ino
    with open(target, "wb") as out:
        proc = subprocess.run(pd(*batches_args(prefix, "-o", "/dev/stdout")), stdout=out,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert target.stat().st_ino == inode
    assert target.read_bytes() == expected_raw(full)
    assert os.path.islink("/dev/stdout")
    assert no_partials(tmp_path) == []


@pytest.mark.slow
def test_dev_stdout_into_a_pipe(pre):
    prefix, full = pre
    proc = subprocess.run(pd(*batches_args(prefix, "-o", "/dev/stdout")), capture_output=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected_raw(full)  # no summary line mixed into the data
    assert os.path.islink("/dev/stdout")


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlink_target_replaced_atomically_link_kept(tmp_path, pre, fmt):
    prefix, full = pre
    target = tmp_path / "real" / f"target.{fmt}"
    target.parent.mkdir()
    target.write_bytes(b"old contents")
    old_inode = target.stat().st_ino
    link = tmp_path / f"link.{fmt}"
    link.symlink_to(target)
    refused = run(*batches_args(prefix, "-o", link))
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert target.read_bytes() == b"old contents"
    result = run(*batches_args(prefix, "-o", link, "--force"))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.stat().st_ino != old_inode  # replaced by a rename, not rewritten in place
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(target), full[3:9])
    elif fmt == "raw":
        assert target.read_bytes() == expected_raw(full)
    else:
        rows = [json.loads(line)["tokens"] for line in target.read_text().splitlines()]
        assert rows == full[3:9].tolist()
    assert no_partials(tmp_path) == [] and no_partials(target.parent) == []


def _drain_fifo(path, sink: list):
    with open(path, "rb") as f:
        sink.append(f.read())


@pytest.mark.parametrize("fmt", FORMATS)
def test_fifo_is_streamed_into_not_replaced(tmp_path, pre, fmt):
    prefix, full = pre
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=_drain_fifo, args=(fifo, got), daemon=True)
    reader.start()
    result = run(*batches_args(prefix, "-o", fifo, "--format", fmt))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if fmt == "raw":
        assert got == [expected_raw(full)]
    elif fmt == "npy":
        import io

        np.testing.assert_array_equal(np.load(io.BytesIO(got[0])), full[3:9])
    else:
        assert [json.loads(x)["tokens"] for x in got[0].decode().splitlines()] == \
            full[3:9].tolist()
    assert no_partials(tmp_path) == []


def test_fifo_without_suffix_defaults_to_raw(tmp_path, pre):
    prefix, full = pre
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=_drain_fifo, args=(fifo, got), daemon=True)
    reader.start()
    result = run(*batches_args(prefix, "-o", fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert got == [expected_raw(full)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_dev_null(pre, fmt):
    prefix, _ = pre
    result = run(*batches_args(prefix, "-o", "/dev/null", "--format", fmt))
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("fmt", [pytest.param("npy", marks=pytest.mark.slow),
                                 pytest.param("jsonl", marks=pytest.mark.slow), "raw"])
def test_dev_full_is_one_line_naming_it(pre, fmt):
    prefix, _ = pre
    proc = subprocess.run(pd(*batches_args(prefix, "-o", "/dev/full", "--format", fmt)),
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "/dev/full" in proc.stderr and "No space left" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert not os.path.exists("/dev/full.partial")


def test_bin_format_refuses_a_stream(pre):
    prefix, _ = pre
    before = {p: os.path.exists(p) for p in ("/dev/full.bin", "/dev/full.idx")}
    result = run(*batches_args(prefix, "-o", "/dev/full", "--format", "bin"))
    assert result.exit_code == 2
    assert "/dev/full" in result.stderr and "two files" in result.stderr
    assert {p: os.path.exists(p) for p in before} == before  # nothing created beside it


def test_process_substitution(tmp_path, pre):
    """`-o >(wc -c)`: bash hands over /dev/fd/63, a pipe: it is streamed into."""
    prefix, full = pre
    count = tmp_path / "count.txt"
    cmd = " ".join(f"'{a}'" for a in pd(*batches_args(prefix, "--format", "raw")))
    script = f"{cmd} -o >(wc -c > '{count}')"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "/dev/fd/" in proc.stdout  # the summary names the output it was given
    deadline = time.monotonic() + 20  # bash does not wait for >(...) to finish
    while time.monotonic() < deadline and not (count.exists() and count.read_text().strip()):
        time.sleep(0.05)
    assert int(count.read_text()) == len(expected_raw(full))
    assert no_partials(tmp_path) == []


def test_json_with_data_on_stdout_goes_to_stderr(pre):
    prefix, full = pre
    result = run(*batches_args(prefix, "--json"))
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected_raw(full)
    summary = json.loads(result.stderr)
    assert summary["rows"] == 6 and summary["format"] == "raw"
    proc = subprocess.run(pd(*batches_args(prefix, "--json", "-o", "-")), capture_output=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout == expected_raw(full)
    assert json.loads(proc.stderr)["tokens"] == 42


def test_checksum_manifest_written_through(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"abc")
    target = tmp_path / "real.sha256"
    target.write_text("old\n")
    link = tmp_path / "link.sha256"
    link.symlink_to(target)
    result = run("checksum", folder, "--write-manifest", link, "-q", "--force")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and "a.bin" in target.read_text()
    fifo = tmp_path / "manifest.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=_drain_fifo, args=(fifo, got), daemon=True)
    reader.start()
    result = run("checksum", folder, "--write-manifest", fifo, "-q")
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert b"a.bin" in got[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    result = run("checksum", folder, "--write-manifest", "/dev/full", "-q")
    assert result.exit_code == 2 and "/dev/full" in result.stderr
    assert no_partials(tmp_path) == []


def test_merge_onto_symlinks(tmp_path, pre):
    prefix, _ = pre
    real = tmp_path / "real"
    real.mkdir()
    write_dataset(real / "m", [np.arange(3)], dtype=np.uint16)
    for suffix in (".bin", ".idx"):
        (tmp_path / f"m{suffix}").symlink_to(real / f"m{suffix}")
    result = run("merge", tmp_path / "m", prefix, prefix, "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.bin").is_symlink() and (tmp_path / "m.idx").is_symlink()
    with IndexedDataset(real / "m") as ds:
        assert len(ds) == 48
    assert no_partials(tmp_path) == [] and no_partials(real) == []


def test_is_stream_target_descriptor_names(tmp_path):
    regular = tmp_path / "f"
    regular.write_bytes(b"")
    assert not is_stream_target(regular)
    assert is_stream_target("-") and is_stream_target("/dev/null")
    with open(regular, "wb") as f:
        assert is_stream_target(f"/dev/fd/{f.fileno()}")  # a regular file, but a descriptor
        assert is_stream_target(f"/proc/self/fd/{f.fileno()}")


# ------------------------------------------------------------------ edge 8: umask


def _every_writer(tmp_path, prefix) -> list:
    """Run every writer once into tmp_path/out; return the files written."""
    out = tmp_path / "out"
    out.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    docs = [np.arange(5 + d, dtype=np.int64) for d in range(40)]
    write_dataset(data / "docs", docs, dtype=np.uint16)  # written under the same umask
    cmds = [
        batches_args(prefix, "-o", out / "b.npy"),
        batches_args(prefix, "-o", out / "b.jsonl"),
        batches_args(prefix, "-o", out / "b.raw"),
        batches_args(prefix, "-o", out / "b.bin"),
        ["checksum", data, "--write-manifest", out / "data.sha256", "-q"],
        ["merge", out / "merged", prefix, data / "docs"],
        ["shard", out / "merged.bin", "-o", out / "shards", "--shard-size", 100, "-q"],
        ["unshard", out / "shards", "-o", out / "unsharded", "-q"],
        ["order", "build", data / "docs", "--train-iters", 3, "--batch-size", 2,
         "--seq-length", 4, "--index-dir", out / "cache", "-q"],
    ]
    for cmd in cmds:
        result = run(*cmd)
        assert result.exit_code == 0, (cmd, result.output)
    files = [os.path.join(root, name) for root, _, names in os.walk(out) for name in names]
    files += [str(data / "docs.bin"), str(data / "docs.idx")]
    return files


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_writer_honours_the_umask(tmp_path, pre, umask):
    prefix, _ = pre
    old = os.umask(umask)
    try:
        files = _every_writer(tmp_path, prefix)
    finally:
        os.umask(old)
    kinds = {os.path.splitext(f)[1] for f in files}
    assert {".npy", ".jsonl", ".raw", ".bin", ".idx", ".sha256"} <= kinds
    assert any("shards" in f for f in files) and any("cache" in f for f in files)
    want = 0o666 & ~umask
    modes = {f: stat.S_IMODE(os.stat(f).st_mode) for f in files}
    assert {f: m for f, m in modes.items() if m != want} == {}


@pytest.mark.parametrize("umask", [pytest.param(0o022, marks=pytest.mark.slow), 0o077])
def test_umask_real_subprocess(tmp_path, pre, umask):
    prefix, _ = pre
    out = tmp_path / "b.npy"
    manifest = tmp_path / "m.sha256"
    env = subprocess_env()
    old = os.umask(umask)  # inherited by the child
    try:
        p1 = subprocess.run(pd(*batches_args(prefix, "-o", out)), capture_output=True,
                            text=True, env=env, timeout=120)
        p2 = subprocess.run(pd("checksum", f"{prefix}.bin", "--write-manifest", manifest, "-q"),
                            capture_output=True, text=True, env=env, timeout=120)
    finally:
        os.umask(old)
    assert p1.returncode == 0 and p2.returncode == 0, (p1.stderr, p2.stderr)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o666 & ~umask


# ------------------------------------------------------------------ edge 15: errors, locks


class _FullDisk:
    """A file object that fails with ENOSPC once ``limit`` bytes were written to it."""

    def __init__(self, fh, limit: int):
        self._fh, self._left = fh, limit

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self._left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= n
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _full_disk_after(monkeypatch, limit: int, only: str | None = None):
    real = os.fdopen

    def fake(fd, *args, **kwargs):
        fh = real(fd, *args, **kwargs)
        if only is None or os.readlink(f"/proc/self/fd/{fd}").endswith(only):
            return _FullDisk(fh, limit)
        return fh

    monkeypatch.setattr(os, "fdopen", fake)


@pytest.mark.parametrize("fmt", ["npy", "jsonl", "raw", "bin"])
@pytest.mark.parametrize("limit", [0, 50])
def test_full_disk_on_write_names_the_file_and_cleans_up(tmp_path, pre, monkeypatch, fmt,
                                                         limit):
    prefix, _ = pre
    out = tmp_path / "o" / f"x.{fmt}"
    out.parent.mkdir()
    _full_disk_after(monkeypatch, limit)
    # the chunked path (the file-copy path of npy/raw uses sendfile, tested below)
    result = run(*batches_args(prefix, "-o", out, "--window", "0:6"))
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.stderr
    assert str(out) in result.stderr and result.stderr.count("\n") == 1
    assert os.listdir(out.parent) == []


@pytest.mark.parametrize("fmt", ["npy", "raw"])
@pytest.mark.parametrize("where", ["file", "stream"])
def test_full_disk_in_sendfile_names_the_output(tmp_path, pre, monkeypatch, fmt, where):
    prefix, _ = pre
    out = tmp_path / "o" / f"x.{fmt}"
    out.parent.mkdir()

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "sendfile", no_space)
    target = out if where == "file" else "/dev/null"
    result = run(*batches_args(prefix, "-o", target, "--format", fmt))
    assert result.exit_code == 2, result.output
    assert f"cannot write {target}: No space left on device" in result.stderr
    assert os.listdir(out.parent) == []


@pytest.mark.parametrize("failing", [".bin", ".idx"])
def test_bin_fsync_failure_names_the_failing_file(tmp_path, pre, monkeypatch, failing):
    prefix, _ = pre
    out = tmp_path / "o" / "x.bin"
    out.parent.mkdir()
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(failing + ".partial"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = run(*batches_args(prefix, "-o", out))
    assert result.exit_code == 2, result.output
    assert f"x{failing}: No space left on device" in result.stderr
    assert os.listdir(out.parent) == []


def test_rename_failure_cleans_up(tmp_path, monkeypatch):
    out = tmp_path / "x.raw"

    def fail(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", fail)
    writer = AtomicOutput(out)
    writer.write(b"abc")
    with pytest.raises(Exception, match=str(out)):
        writer.commit()
    assert os.listdir(tmp_path) == []


def test_group_commit_aborts_the_rest(tmp_path, monkeypatch):
    a, b = AtomicOutput(tmp_path / "a.bin"), AtomicOutput(tmp_path / "a.idx")
    a.write(b"1")
    b.write(b"2")
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".bin"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Exception, match="a.bin"):
        AtomicGroup([a, b]).commit()
    assert os.listdir(tmp_path) == []


_HOLDER = """
import sys
from pythia_data.io.atomic import AtomicOutput
out = AtomicOutput(sys.argv[1])
out.write(b"first writer")
print("locked", flush=True)
sys.stdin.read()
out.commit()
"""


@pytest.mark.parametrize("fmt", ["npy", pytest.param("bin", marks=pytest.mark.slow)])
def test_second_writer_fails_at_once(tmp_path, pre, fmt):
    prefix, full = pre
    out = tmp_path / f"x.{fmt}"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(pd(*batches_args(prefix, "-o", out, "--force")),
                              capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"pythia-data: error: another pythia-data is writing {out}"
        assert (tmp_path / f"x.{fmt}.partial").exists()  # the first writer's, untouched
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert out.read_bytes() == b"first writer"
    assert no_partials(tmp_path) == []
    assert run(*batches_args(prefix, "-o", out, "--force")).exit_code == 0


def test_atomic_output_writes_the_rest_of_a_short_write(tmp_path):
    """An unbuffered file may take part of a buffer per write (Linux: at most 2 GiB - 4 KiB;
    a filling disk): the rest is written by further calls, never dropped; a file that
    takes nothing is an OutputError, not an endless loop."""
    import numpy as np

    from pythia_data.errors import OutputError
    from pythia_data.io.atomic import AtomicOutput

    class Trickle:
        def __init__(self, fh, most):
            self.fh, self.most = fh, most

        def write(self, data):
            return self.fh.write(bytes(memoryview(data)[: self.most]))

        def __getattr__(self, name):
            return getattr(self.fh, name)

    out = AtomicOutput(tmp_path / "a.bin")
    out.fh = Trickle(out.fh, 7)
    arr = np.arange(1000, dtype=np.uint16)
    out.write(arr)
    out.write(b"tail")
    out.fh = out.fh.fh
    out.commit(sync=False)
    assert (tmp_path / "a.bin").read_bytes() == arr.tobytes() + b"tail"

    out = AtomicOutput(tmp_path / "b.bin")
    real = out.fh
    out.fh = Trickle(real, 0)
    with pytest.raises(OutputError, match="took no bytes"):
        out.write(b"abc")
    out.fh = real
    out.abort()
    assert not (tmp_path / "b.bin").exists()
