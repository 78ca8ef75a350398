"""Issue 8's rough edges in shard / unshard / checksum (6, 7, 14, 15, 16): each test failed
before the fix."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import pythia_data.io.copy as copy_mod
import pythia_data.shards.reassemble as reassemble_mod
import pythia_data.shards.split as split_mod
from pythia_data.cli.app import cli
from pythia_data.dataset import write_dataset
from pythia_data.errors import InputError, UsageError, VerificationError
from pythia_data.integrity.verify import checksum_files
from pythia_data.shards import shard, unshard
from tests.conftest import subprocess_env


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def dataset_shards(tmp_path: Path, shard_size: int = 700, keep_manifest: bool = True):
    """A real dataset (``doc.bin`` + ``doc.idx``) sharded into tmp/shards by ``shard``, which
    leaves ``doc.sha256`` and ``doc.idx`` beside the shards."""
    docs = [np.arange(k * 100, k * 100 + n) for k, n in enumerate([300, 1, 450, 77, 999, 12])]
    (tmp_path / "src").mkdir()
    prefix = write_dataset(tmp_path / "src" / "doc", docs, dtype=np.uint16)
    res = shard(prefix + ".bin", tmp_path / "shards", shard_size)
    if not keep_manifest:
        res.manifest.unlink()
    data = Path(prefix + ".bin").read_bytes()
    return data, res.paths, tmp_path / "shards"


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x20
    path.write_bytes(bytes(raw))


# ------------------------------------------------------ 6: verification skipped silently


def test_unshard_verifies_against_manifest_beside_shards(tmp_path):
    data, paths, folder = dataset_shards(tmp_path)
    flip(paths[1], 5)
    with pytest.raises(VerificationError, match=paths[1].name):
        unshard(folder, tmp_path / "out")
    assert not (tmp_path / "out" / "doc.bin").exists()
    r = CliRunner().invoke(cli, ["unshard", str(folder), "-o", str(tmp_path / "cli"), "-q"])
    assert r.exit_code == 1, r.output
    assert paths[1].name in r.output
    assert not (tmp_path / "cli" / "doc.bin").exists()


def test_unshard_pristine_with_manifest_beside_is_verified(tmp_path):
    data, paths, folder = dataset_shards(tmp_path)
    res = unshard(folder, tmp_path / "out")
    assert res.verified and res.idx_status == "ok" and res.warnings == []
    assert res.manifests == [str(folder / "doc.sha256")]
    assert (tmp_path / "out" / "doc.bin").read_bytes() == data
    assert f"{len(paths)}/{len(paths)} shard SHA256s verified" in res.summary()


def test_unshard_says_when_nothing_could_be_verified(tmp_path):
    data, paths, folder = dataset_shards(tmp_path, keep_manifest=False)
    (folder / "doc.idx").unlink()
    res = unshard(folder, tmp_path / "out")
    assert (tmp_path / "out" / "doc.bin").read_bytes() == data
    text = " ".join(res.warnings)
    assert "nothing could be verified" in text and "no doc.idx" in text
    r = CliRunner().invoke(cli, ["unshard", str(folder), "-o", str(tmp_path / "cli"), "-q"])
    assert r.exit_code == 0
    assert "warning: nothing could be verified" in r.stderr
    assert "warning: no doc.idx beside the shards" in r.stderr


# ------------------------------------------------------ 14: verification holes


def test_unshard_checks_idx_against_expected(tmp_path):
    data, paths, folder = dataset_shards(tmp_path)
    manifest = tmp_path / "m.sha256"
    manifest.write_text((folder / "doc.sha256").read_text()
                        + f"{sha((folder / 'doc.idx').read_bytes())}  doc.idx\n")
    (folder / "doc.sha256").unlink()
    idx = folder / "doc.idx"
    flip(idx, idx.stat().st_size - 1)  # the document index: the size check cannot see it
    with pytest.raises(VerificationError, match="doc.idx"):
        unshard(folder, tmp_path / "out", expected=manifest)
    assert listing(tmp_path / "out") == []
    r = CliRunner().invoke(cli, ["unshard", str(folder), "-o", str(tmp_path / "cli"),
                                 "-c", str(manifest), "-q"])
    assert r.exit_code == 1 and "doc.idx" in r.output
    c = CliRunner().invoke(cli, ["checksum", str(idx), "-c", str(manifest), "-q"])
    assert c.exit_code == 1  # the two commands now agree


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_manifest_covering_nothing_is_an_error(tmp_path, text):
    data, paths, folder = dataset_shards(tmp_path, keep_manifest=False)
    manifest = tmp_path / "empty.sha256"
    manifest.write_text(text)
    with pytest.raises(InputError, match="cannot verify anything"):
        unshard(folder, tmp_path / "out", expected=manifest)
    assert not (tmp_path / "out" / "doc.bin").exists()
    r = CliRunner().invoke(cli, ["unshard", str(folder), "-o", str(tmp_path / "cli"),
                                 "-c", str(manifest), "-q"])
    assert r.exit_code == 2 and not (tmp_path / "cli" / "doc.bin").exists()
    with pytest.raises(InputError, match="verify anything"):
        checksum_files([folder], manifest)
    r = CliRunner().invoke(cli, ["checksum", str(folder), "-c", str(manifest), "-q"])
    assert r.exit_code == 2


def test_manifest_for_other_files_is_an_error(tmp_path):
    data, paths, folder = dataset_shards(tmp_path, keep_manifest=False)
    other = tmp_path / "other.sha256"
    other.write_text(f"{sha(b'x')}  something-else.bin\n")
    with pytest.raises(InputError, match="lists none of the"):
        unshard(folder, tmp_path / "out", expected=other)
    with pytest.raises(InputError, match="lists none of the"):
        checksum_files(paths, other)


def test_whole_file_line_does_not_fail_a_shard_check(tmp_path):
    data, paths, folder = dataset_shards(tmp_path, keep_manifest=False)
    manifest = tmp_path / "demo_style.txt"  # Pythia's style, as the demo writes it
    lines = [f"{p.name} {sha(p.read_bytes())}" for p in paths]
    lines += [f"doc.idx {sha((folder / 'doc.idx').read_bytes())}", f"doc.bin {sha(data)}"]
    manifest.write_text("\n".join(lines) + "\n")
    rep = checksum_files([folder], manifest)
    assert rep.ok, rep.summary()
    r = CliRunner().invoke(cli, ["checksum", str(folder), "--expected", str(manifest)])
    assert r.exit_code == 0, r.output
    assert "MISSING" not in r.output
    paths[0].unlink()  # a shard that is not there is still missing
    r = CliRunner().invoke(cli, ["checksum", str(folder), "--expected", str(manifest)])
    assert r.exit_code == 1 and f"{paths[0].name}: MISSING" in r.output


def test_demo_manifest_checks_pristine_demo_folder(tmp_path):
    from pythia_data.demo import build_demo

    files = build_demo(tmp_path / "demo")
    r = CliRunner().invoke(cli, ["checksum", str(files.source), "--expected",
                                 str(files.manifest), "-q"])
    assert r.exit_code == 0, r.output


# ------------------------------------------------------ 7: shard atomic as a set, resumable


def test_shard_interrupted_leaves_no_final_names_then_resumes(tmp_path, monkeypatch):
    data = np.random.default_rng(1).integers(0, 256, 10_500, dtype=np.uint8).tobytes()
    (tmp_path / "doc.bin").write_bytes(data)
    out = tmp_path / "out"
    real = split_mod.copy_hashed
    calls = []

    def stop_at(k):
        def fake(src, size, fd, off, name, **kw):
            calls.append(name)
            if len(calls) == k:
                raise KeyboardInterrupt
            return real(src, size, fd, off, name, **kw)
        return fake

    monkeypatch.setattr(split_mod, "copy_hashed", stop_at(7))
    with pytest.raises(KeyboardInterrupt):
        shard(tmp_path / "doc.bin", out, 1_000)
    # nothing under a final shard name, the completed shards kept for the rerun
    assert not [n for n in listing(out) if n.endswith(".bin")]
    assert len([n for n in listing(out) if n.endswith(".bin.partial")]) == 6
    calls.clear()
    monkeypatch.setattr(split_mod, "copy_hashed", stop_at(10**9))
    res = shard(tmp_path / "doc.bin", out, 1_000)
    assert res.resumed == 6 and len(calls) == 11 - 6
    assert b"".join(p.read_bytes() for p in res.paths) == data
    assert listing(out) == sorted([p.name for p in res.paths] + ["doc.sha256"])
    assert unshard(out, tmp_path / "back").verified


def test_shard_resume_drops_a_damaged_completed_shard(tmp_path, monkeypatch):
    data = np.random.default_rng(2).integers(0, 256, 5_000, dtype=np.uint8).tobytes()
    (tmp_path / "doc.bin").write_bytes(data)
    out = tmp_path / "out"
    real = split_mod.copy_hashed

    def stop_at_3(src, size, fd, off, name, **kw):
        if name.startswith("doc-00003"):
            raise KeyboardInterrupt
        return real(src, size, fd, off, name, **kw)

    monkeypatch.setattr(split_mod, "copy_hashed", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        shard(tmp_path / "doc.bin", out, 1_000)
    monkeypatch.setattr(split_mod, "copy_hashed", real)
    flip(out / "doc-00001-of-00005.bin.partial", 10)
    res = shard(tmp_path / "doc.bin", out, 1_000)
    assert res.resumed == 2  # shards 0 and 2; shard 1 is written again
    assert b"".join(p.read_bytes() for p in res.paths) == data


def test_shard_full_disk_then_rerun_resumes(tmp_path, monkeypatch):
    data = np.random.default_rng(3).integers(0, 256, 6_000, dtype=np.uint8).tobytes()
    (tmp_path / "doc.bin").write_bytes(data)
    out = tmp_path / "out"
    real = copy_mod.pwrite_raw
    written = [0]

    def full_disk(fd, buf, offset):
        if written[0] >= 3_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(buf)
        return real(fd, buf, offset)

    monkeypatch.setattr(copy_mod, "pwrite_raw", full_disk)
    r = CliRunner().invoke(cli, ["shard", str(tmp_path / "doc.bin"), "-o", str(out),
                                 "--shard-size", "1000", "-q"])
    assert r.exit_code == 2 and "rerun" in r.output
    monkeypatch.setattr(copy_mod, "pwrite_raw", real)
    r = CliRunner().invoke(cli, ["shard", str(tmp_path / "doc.bin"), "-o", str(out),
                                 "--shard-size", "1000", "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["resumed"] == 3
    assert b"".join((out / f"doc-{i:05d}-of-00006.bin").read_bytes() for i in range(7)) == data


def test_shard_count_is_bounded(tmp_path):
    (tmp_path / "doc.bin").write_bytes(b"\0" * 20_001)
    with pytest.raises(UsageError, match="at least 3 bytes"):
        shard(tmp_path / "doc.bin", tmp_path / "out", 2, max_shards=10_000)
    assert listing(tmp_path / "out") == []
    r = CliRunner().invoke(cli, ["shard", str(tmp_path / "doc.bin"), "-o",
                                 str(tmp_path / "cli"), "--shard-size", "1", "-q"])
    assert r.exit_code == 2 and "more than 10000" in r.output
    assert listing(tmp_path / "cli") == []


# ------------------------------------------------------ 15: two unshards into one folder

SLOW_UNSHARD = r"""
import os, sys, time
import pythia_data.shards.reassemble as S
real = S.copy_hashed
marker, release = sys.argv[2], sys.argv[4]
def slow(src, *a, **k):
    if src.name.startswith("doc-00001"):
        open(marker, "w").close()   # mid-unshard, holding the lock
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)         # until the test has run the second unshard
    return real(src, *a, **k)
S.copy_hashed = slow
from pythia_data.cli import main
sys.argv = ["pythia-data", "unshard", sys.argv[1], "-o", sys.argv[3], "-j", "1", "-q"]
main()
"""


@pytest.mark.slow
def test_two_unshards_into_one_folder(tmp_path):
    data, paths, folder = dataset_shards(tmp_path)
    out = tmp_path / "out"
    marker = tmp_path / "marker"
    release = tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-c", SLOW_UNSHARD, str(folder), str(marker),
                              str(out), str(release)], env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not marker.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists(), first.communicate()
        second = subprocess.run([sys.executable, "-m", "pythia_data", "unshard", str(folder),
                                 "-o", str(out), "-q"], env=subprocess_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1  # one line
        assert second.stderr.strip().endswith(
            f"another pythia-data is writing {out / 'doc.bin'}")
        release.touch()
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert (out / "doc.bin").read_bytes() == data
    assert listing(out) == ["doc.bin", "doc.idx"]  # no stale .partial / .partial.json
    third = subprocess.run([sys.executable, "-m", "pythia_data", "unshard", str(folder),
                            "-o", str(out), "-q"], env=subprocess_env(),
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 2 and "already exists" in third.stderr
    assert listing(out) == ["doc.bin", "doc.idx"]


@pytest.mark.slow
def test_racing_unshards_leave_no_stale_state(tmp_path):
    data, paths, folder = dataset_shards(tmp_path)
    for k in range(6):
        out = tmp_path / f"out{k}"
        cmd = [sys.executable, "-m", "pythia_data", "unshard", str(folder), "-o", str(out), "-q"]
        procs = [subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert sorted(rc for rc, _ in results) in ([0, 0], [0, 2]), results
        for rc, err in results:
            if rc == 2:
                assert "another pythia-data is writing" in err or "already exists" in err, err
        assert (out / "doc.bin").read_bytes() == data
        assert listing(out) == ["doc.bin", "doc.idx"]


# ------------------------------------------------------ 16: durable unshard's disk writes


def test_durable_unshard_starts_writeback_and_batches_state(tmp_path, monkeypatch):
    data, paths, folder = dataset_shards(tmp_path, shard_size=300)
    started = []
    real = copy_mod.start_writeback
    monkeypatch.setattr(copy_mod, "start_writeback",
                        lambda fd, off, n: (started.append(n), real(fd, off, n)))
    saves = []
    real_save = reassemble_mod._save_state
    monkeypatch.setattr(reassemble_mod, "_save_state",
                        lambda *a: (saves.append(1), real_save(*a)))
    res = unshard(folder, tmp_path / "out", jobs=1)
    assert sum(started) == len(data)  # every byte written was handed to writeback early
    assert len(saves) == 1  # the initial empty state only: no per-shard state rewrite
    assert len(paths) > 10 and res.verified
    started.clear()
    unshard(folder, tmp_path / "fast", jobs=1, sync=False)
    assert started == []  # --no-sync does not ask for writeback
