"""shard / unshard: round trips, verification, refusal before writing, atomicity, resume."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import pythia_data.io.copy as copy_mod
import pythia_data.shards.reassemble as shards_mod
from pythia_data.cli.app import cli
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.errors import OutputError, ShardError, VerificationError
from pythia_data.integrity.manifest import Manifest, format_manifest
from pythia_data.shards import find_shards, shard, shard_layout, unshard
from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parent.parent


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_set(tmp_path: Path, total: int, shard_size: int, base: str = "doc", seed: int = 0):
    """A ``.bin`` of ``total`` random bytes, its shards in tmp/shards, and a manifest."""
    data = np.random.default_rng(seed).integers(0, 256, total, dtype=np.uint8).tobytes()
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / f"{base}.bin").write_bytes(data)
    res = shard(src / f"{base}.bin", tmp_path / "shards", shard_size)
    manifest = tmp_path / "shards" / f"{base}.sha256"
    os.replace(res.manifest, manifest)
    with open(manifest, "a") as f:
        f.write(f"{sha(data)}  {base}.bin\n")
    # keep the manifest out of the shard folder's way
    moved = tmp_path / f"{base}.sha256"
    os.replace(manifest, moved)
    return data, res.paths, moved


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# -------------------------------------------------------------------- shard


def test_shard_layout_like_pythia():
    assert shard_layout(10, 4) == [4, 4, 2]
    assert shard_layout(8, 4) == [4, 4, 0]  # Pythia: last index = size // shard_size
    assert shard_layout(0, 4) == [0]
    assert shard_layout(3, 4) == [3]


def test_shard_names_and_manifest(tmp_path):
    data, paths, manifest = make_set(tmp_path, 2_500, 1_000)
    assert [p.name for p in paths] == [f"doc-{i:05d}-of-00002.bin" for i in range(3)]
    assert [p.stat().st_size for p in paths] == [1000, 1000, 500]
    m = Manifest.load(manifest)
    assert m.get(paths[1].name).digest == sha(data[1000:2000])
    assert b"".join(p.read_bytes() for p in paths) == data
    with pytest.raises(OutputError, match="already exists"):
        shard(tmp_path / "src" / "doc.bin", tmp_path / "shards", 1_000)


# -------------------------------------------------------------------- round trips


@settings(max_examples=12, deadline=None)
@given(total=st.integers(0, 5_000), shard_size=st.integers(1, 1_500), jobs=st.integers(1, 3),
       verify=st.booleans(), full=st.booleans())
def test_round_trip(tmp_path_factory, total, shard_size, jobs, verify, full):
    # at most ~40 shards: one-byte shards of a few bytes stay in, thousands of files do not
    # (they cost seconds and test nothing more)
    shard_size = max(shard_size, -(-total // 40))
    tmp = tmp_path_factory.mktemp("rt")
    data, paths, manifest = make_set(tmp, total, shard_size)
    seen = []
    res = unshard(paths[-1], tmp / "out", expected=manifest, verify=verify, full_hash=full,
                  jobs=jobs, progress=seen.append)
    assert (tmp / "out" / "doc.bin").read_bytes() == data
    assert listing(tmp / "out") == ["doc.bin"]
    assert res.total_bytes == total and sum(seen) >= total
    assert res.verified == verify
    if verify:
        assert [s.status for s in res.shards] == ["ok"] * len(paths)
        assert res.whole_status == ("ok" if full else "implied")
        assert res.whole_digest == (sha(data) if full else None)


def test_idx_copied_checked_and_readable(tmp_path):
    docs = [np.arange(k * 1000, k * 1000 + n) for k, n in enumerate([7, 300, 1, 45, 999, 12])]
    (tmp_path / "src").mkdir()
    prefix = write_dataset(tmp_path / "src" / "doc", docs, dtype=np.uint16)
    shard(prefix + ".bin", tmp_path / "shards", 333)  # odd: tokens straddle shards
    os.replace(prefix + ".idx", tmp_path / "shards" / "doc.idx")
    res = unshard(tmp_path / "shards", tmp_path / "out")
    assert res.idx_checked and res.idx_output == tmp_path / "out" / "doc.idx"
    with IndexedDataset(tmp_path / "out" / "doc") as ds:
        assert [ds[i].tolist() for i in range(len(docs))] == [d.tolist() for d in docs]
    # a truncated last shard is caught by the .idx size check, before writing anything
    last = find_shards(tmp_path / "shards").paths[-1]
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size - 2)
    with pytest.raises(ShardError, match="expects"):
        unshard(tmp_path / "shards", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_default_output_beside_shards_and_existing_output(tmp_path):
    data, paths, manifest = make_set(tmp_path, 3_000, 1_000)
    unshard(paths[0])
    assert (tmp_path / "shards" / "doc.bin").read_bytes() == data
    with pytest.raises(OutputError, match="already exists"):
        unshard(paths[0])
    unshard(paths[0], overwrite=True, expected=manifest)
    r = CliRunner().invoke(cli, ["unshard", str(paths[0])])
    assert r.exit_code == 2


@pytest.mark.parametrize("verify", [True, False])
def test_no_sync_skips_data_fsyncs_only(tmp_path, monkeypatch, verify):
    data, paths, manifest = make_set(tmp_path, 4_000, 1_000)
    calls = []
    real = shards_mod.fsync_fd
    monkeypatch.setattr(shards_mod, "fsync_fd", lambda fd, name: (calls.append(name), real(fd, name)))
    res = unshard(paths[0], tmp_path / "durable", expected=manifest, verify=verify)
    assert calls, "the default run fsyncs the output"
    calls.clear()
    fast = unshard(paths[0], tmp_path / "fast", expected=manifest, verify=verify, sync=False)
    assert calls == []
    assert (tmp_path / "fast" / "doc.bin").read_bytes() == data
    assert fast.verified == res.verified == verify
    r = CliRunner().invoke(cli, ["unshard", str(paths[0]), "-o", str(tmp_path / "cli"),
                                 "-c", str(manifest), "-q", "--no-sync"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli" / "doc.bin").read_bytes() == data


# -------------------------------------------------------------------- verification


@pytest.mark.parametrize("bad", [0, 2, 4])
def test_flipped_byte_names_the_shard(tmp_path, bad):
    data, paths, manifest = make_set(tmp_path, 4_321, 1_000)
    raw = bytearray(paths[bad].read_bytes())
    raw[len(raw) // 2] ^= 0x40
    paths[bad].write_bytes(bytes(raw))
    with pytest.raises(VerificationError, match=paths[bad].name):
        unshard(paths[0], tmp_path / "out", expected=manifest, jobs=2)
    assert not (tmp_path / "out" / "doc.bin").exists()
    r = CliRunner().invoke(cli, ["unshard", str(paths[0]), "-o", str(tmp_path / "o2"),
                                 "-c", str(manifest), "-q"])
    assert r.exit_code == 1
    assert not (tmp_path / "o2" / "doc.bin").exists()


def test_whole_file_hash_only(tmp_path):
    data, paths, _ = make_set(tmp_path, 3_000, 1_000)
    good = tmp_path / "whole.txt"
    good.write_text(f"doc.bin {sha(data)}\n")
    res = unshard(paths[0], tmp_path / "a", expected=good)
    assert res.whole_status == "ok" and [s.status for s in res.shards] == ["unknown"] * len(paths)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"doc.bin {sha(data + b'x')}\n")
    with pytest.raises(VerificationError, match="doc.bin"):
        unshard(paths[0], tmp_path / "b", expected=bad)
    assert listing(tmp_path / "b") == []


def test_subprocess_verification_failure_one_line(tmp_path):
    data, paths, manifest = make_set(tmp_path, 3_000, 1_000)
    raw = bytearray(paths[1].read_bytes())
    raw[0] ^= 1
    paths[1].write_bytes(bytes(raw))
    p = subprocess.run([sys.executable, "-m", "pythia_data", "unshard", str(paths[0]), "-o",
                        str(tmp_path / "out"), "-c", str(manifest)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and paths[1].name in p.stderr
    assert not (tmp_path / "out" / "doc.bin").exists()


# -------------------------------------------------------------------- refusal before writing


@pytest.mark.parametrize("damage", ["missing", "extra", "short", "misnumbered", "count_as_last"])
def test_bad_sets_refused_before_any_write(tmp_path, damage):
    data, paths, manifest = make_set(tmp_path, 4_500, 1_000)
    folder = paths[0].parent
    if damage == "missing":
        paths[2].unlink()
    elif damage == "extra":
        (folder / "doc-00005-of-00004.bin").write_bytes(b"x")
    elif damage == "short":
        with open(paths[1], "r+b") as f:
            f.truncate(999)
    elif damage == "misnumbered":
        os.replace(paths[3], folder / "doc-00003-of-00005.bin")
    else:
        for i, p in enumerate(paths):
            os.replace(p, folder / f"doc-{i:05d}-of-00005.bin")
    out = tmp_path / "out"
    with pytest.raises(ShardError):
        unshard(folder, out, expected=manifest)
    assert not out.exists()
    r = CliRunner().invoke(cli, ["unshard", str(folder), "-o", str(out)])
    assert r.exit_code == 2 and not out.exists()


# -------------------------------------------------------------------- resume


def test_enospc_then_resume(tmp_path, monkeypatch):
    data, paths, manifest = make_set(tmp_path, 10_000, 1_000)
    out = tmp_path / "out"
    real = copy_mod.pwrite_raw
    written = [0]

    def full_disk(fd, buf, offset):
        if written[0] >= 3_500:  # shards 0..3 written, shard 4 fails
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(buf)
        return real(fd, buf, offset)

    monkeypatch.setattr(copy_mod, "pwrite_raw", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        unshard(paths[0], out, expected=manifest, jobs=1)
    assert listing(out) == ["doc.bin.partial", "doc.bin.partial.json"]
    state = json.loads((out / "doc.bin.partial.json").read_text())
    assert sorted(state["done"]) == ["0", "1", "2", "3"]
    # the CLI: one line, exit 2
    written[0] = 10**9
    r = CliRunner().invoke(cli, ["unshard", str(paths[0]), "-o", str(out), "-j", "1", "-q"])
    assert r.exit_code != 0 and not (out / "doc.bin").exists()
    monkeypatch.setattr(copy_mod, "pwrite_raw", real)
    copied = []
    orig_copy = shards_mod.copy_hashed
    monkeypatch.setattr(shards_mod, "copy_hashed",
                        lambda src, *a, **k: copied.append(src.name) or orig_copy(src, *a, **k))
    res = unshard(paths[0], out, expected=manifest, jobs=1)
    assert res.resumed_shards == 4
    assert copied == [p.name for p in paths[4:]]
    assert (out / "doc.bin").read_bytes() == data
    assert listing(out) == ["doc.bin"]


def test_resume_repairs_damaged_partial_and_replaced_shard(tmp_path, monkeypatch):
    data, paths, manifest = make_set(tmp_path, 6_000, 1_000)
    out = tmp_path / "out"
    real = shards_mod.copy_hashed

    def stop_at_4(src, *a, **k):
        if src.name == paths[4].name:
            raise KeyboardInterrupt
        return real(src, *a, **k)

    monkeypatch.setattr(shards_mod, "copy_hashed", stop_at_4)
    with pytest.raises(KeyboardInterrupt):
        unshard(paths[0], out, expected=manifest, jobs=1)
    monkeypatch.setattr(shards_mod, "copy_hashed", real)
    # damage shard 1's bytes inside the partial; touch shard 2 (re-downloaded)
    with open(out / "doc.bin.partial", "r+b") as f:
        f.seek(1_500)
        f.write(b"\x00\x01\x02")
    st2 = paths[2].stat()
    os.utime(paths[2], ns=(st2.st_atime_ns, st2.st_mtime_ns + 10**9))
    res = unshard(paths[0], out, expected=manifest, jobs=1)
    assert res.resumed_shards == 2  # shards 0 and 3
    assert (out / "doc.bin").read_bytes() == data


def test_resume_with_full_hash_rehashes_prefix(tmp_path, monkeypatch):
    data, paths, manifest = make_set(tmp_path, 5_000, 1_000)
    out = tmp_path / "out"
    real = shards_mod.copy_hashed

    def stop_at_3(src, *a, **k):
        if src.name == paths[3].name:
            raise OSError(errno.EIO, "boom")
        return real(src, *a, **k)

    monkeypatch.setattr(shards_mod, "copy_hashed", stop_at_3)
    with pytest.raises(OSError):
        unshard(paths[0], out, expected=manifest, full_hash=True)
    monkeypatch.setattr(shards_mod, "copy_hashed", real)
    res = unshard(paths[0], out, expected=manifest, full_hash=True)
    assert res.resumed_shards == 3 and res.whole_digest == sha(data)
    assert (out / "doc.bin").read_bytes() == data


def test_stale_state_for_other_shards_is_ignored(tmp_path):
    data, paths, manifest = make_set(tmp_path, 3_000, 1_000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "doc.bin.partial").write_bytes(b"\xff" * 3_000)
    (out / "doc.bin.partial.json").write_text(json.dumps({"format": "other"}))
    res = unshard(paths[0], out, expected=manifest)
    assert res.resumed_shards == 0 and (out / "doc.bin").read_bytes() == data


KILLER = r"""
import os, sys, time
import pythia_data.shards.reassemble as S
real = S.copy_hashed
S.COMMIT_BYTES = 1  # commit after every shard (the default batches a few GiB)
marker = sys.argv[2]
def slow(src, *a, **k):
    if src.name.startswith("doc-00003"):
        open(marker, "w").close()   # tell the test we are mid-unshard
        time.sleep(60)
    return real(src, *a, **k)
S.copy_hashed = slow
from pythia_data.cli import main
sys.argv = ["pythia-data", "unshard", sys.argv[1], "-o", sys.argv[3], "-j", "1", "-q",
            "-c", sys.argv[4]]
main()
"""


def test_kill_9_mid_unshard_then_rerun(tmp_path):
    data, paths, manifest = make_set(tmp_path, 6 * 65_536 + 123, 65_536)
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(paths[0]), str(marker), str(out),
                             str(manifest)], env=subprocess_env())
    try:
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the child never reached shard 3"
        # shards 0..2 are committed by a background thread: wait until the state lists them
        state_path = out / "doc.bin.partial.json"
        while time.time() < deadline:
            try:
                if len(json.loads(state_path.read_text())["done"]) == 3:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "doc.bin").exists()
    assert (out / "doc.bin.partial").exists()
    p = subprocess.run([sys.executable, "-m", "pythia_data", "unshard", str(paths[0]), "-o",
                        str(out), "-c", str(manifest), "--json", "-q"],
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["resumed_shards"] == 3 and doc["verified"] is True
    assert (out / "doc.bin").read_bytes() == data
    assert listing(out) == ["doc.bin"]


def test_manifest_helpers_round_trip():
    text = format_manifest([("a.bin", sha(b"a"))])
    assert Manifest.parse(text).get("a.bin").digest == sha(b"a")
