"""The Pythia drop-in scripts bin/unshard_memmap.py and bin/checksum_shards.py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pythia_data.shards import shard
from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parent.parent
UNSHARD = REPO / "bin" / "unshard_memmap.py"
CHECKSUM = REPO / "bin" / "checksum_shards.py"


def run(script: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, env=subprocess_env(), cwd=cwd, timeout=120)


@pytest.fixture
def sharded(tmp_path):
    data = os.urandom(2_500)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "doc.bin").write_bytes(data)
    res = shard(tmp_path / "src" / "doc.bin", tmp_path / "pythia_deduped_pile_idxmaps", 1_000)
    utils = tmp_path / "utils"
    utils.mkdir()
    # Pythia's manifest style: NAME HEX
    (utils / "shard_hashes.txt").write_text(
        "".join(f"{p.name} {d}\n" for p, d in zip(res.paths, res.digests, strict=True)))
    res.manifest.unlink()
    return tmp_path, data, res.paths


@pytest.mark.parametrize("num_shards", [None, 3, 2])
def test_unshard_memmap_count_or_index(sharded, num_shards):
    tmp, data, paths = sharded
    args = ["--input_file", paths[0], "--output_dir", tmp / "out"]  # not -q: it hides the note
    if num_shards is not None:
        args += ["--num_shards", num_shards]
    p = run(UNSHARD, *args)
    assert p.returncode == 0, p.stderr
    assert (tmp / "out" / "doc.bin").read_bytes() == data
    assert ("names" in p.stderr) == (num_shards == 2)


def test_unshard_memmap_bad_count_and_bad_shard(sharded):
    tmp, data, paths = sharded
    p = run(UNSHARD, "--input_file", paths[0], "--num_shards", 7, "--output_dir", tmp / "o")
    assert p.returncode == 2 and "--num_shards 7" in p.stderr and not (tmp / "o").exists()
    raw = bytearray(paths[1].read_bytes())
    raw[3] ^= 1
    paths[1].write_bytes(bytes(raw))
    manifest = tmp / "m.txt"
    manifest.write_text((tmp / "utils" / "shard_hashes.txt").read_text())
    p = run(UNSHARD, "--input_file", paths[0], "--num_shards", 3, "--output_dir", tmp / "o",
            "--expected", manifest)
    assert p.returncode == 1 and paths[1].name in p.stderr
    assert not (tmp / "o" / "doc.bin").exists()


def test_checksum_shards_defaults_like_pythia(sharded):
    tmp, data, paths = sharded
    p = run(CHECKSUM, "--quiet", cwd=tmp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"Match: {q.name} - Hashes are the same" for q in paths]
    paths[2].write_bytes(b"changed")
    (tmp / "pythia_deduped_pile_idxmaps" / "notes.txt").write_text("x")
    paths[0].unlink()
    p = run(CHECKSUM, "--quiet", cwd=tmp)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert f"Mismatch: {paths[2].name} - Hashes differ" in lines
    assert f"Missing: {paths[0].name} - File not found" in lines
    assert "No hash found for file: notes.txt" in lines
    p = run(CHECKSUM, "--directory", tmp / "nowhere", cwd=tmp)
    assert p.returncode == 2


def test_checksum_shards_builtin_hashes(tmp_path):
    d = tmp_path / "pythia_deduped_pile_idxmaps"
    d.mkdir()
    name = "pile_0.87_deduped_text_document-00000-of-00082.bin"
    (d / name).write_bytes(b"fake")
    p = run(CHECKSUM, "--quiet", cwd=tmp_path)
    assert p.returncode == 1
    assert f"Mismatch: {name} - Hashes differ" in p.stdout.splitlines()
    assert hashlib.sha256(b"fake").hexdigest() not in p.stdout
