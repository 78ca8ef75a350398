"""Issue 8, edge 11: the drop-in scripts (bin/*.py) behave under | head, accept what they
suggest, and explain data of another batch size in one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from pythia_data.dataset import write_dataset
from pythia_data.shards import shard
from tests.conftest import REPO, subprocess_env

BIN = REPO / "bin"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_stdout(script, *args) -> tuple[int, str]:
    """Run a script whose stdout reader has gone away (what `| head` does)."""
    proc = subprocess.Popen([sys.executable, str(BIN / script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=120), err


@pytest.fixture
def shards(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "doc.bin").write_bytes(bytes(range(256)) * 10)
    res = shard(src / "doc.bin", tmp_path / "shards", 300)
    return tmp_path, res


@pytest.fixture
def p2049(tmp_path):
    """10 preshuffled-shaped sequences of 2049 tokens (fewer than one batch of 1024)."""
    docs = [(np.arange(2049) + 7 * s) % 65536 for s in range(10)]
    return write_dataset(tmp_path / "p2049", docs, dtype=np.uint16), np.stack(docs)


def test_checksum_shards_under_head_is_quiet(shards):
    tmp, res = shards
    code, err = closed_stdout("checksum_shards.py", "--directory", tmp / "shards",
                              "--hashes", res.manifest, "--quiet")
    assert code == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""


@pytest.mark.slow
def test_batch_viewer_under_head_is_quiet(tmp_path, p2049):
    prefix, _ = p2049
    code, err = closed_stdout("batch_viewer.py", prefix, "--save_path", tmp_path / "out",
                              "--batch_size", 5, "--quiet")
    assert code == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""
    assert (tmp_path / "out" / "indicies.npy").exists()


def test_unshard_memmap_accepts_the_force_it_suggests(shards):
    tmp, res = shards
    args = [str(a) for a in ("--input_file", res.paths[0], "--output_dir", tmp / "out", "-q")]
    script = load("unshard_memmap")
    assert script.main(args) == 0
    out = tmp / "out" / "doc.bin"
    out.write_bytes(b"stale")
    proc = subprocess.run([sys.executable, str(BIN / "unshard_memmap.py"), *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, str(BIN / "unshard_memmap.py"), *map(str, args),
                           "--force"], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (tmp / "src" / "doc.bin").read_bytes()


def test_batch_viewer_other_batch_size_one_clear_message(tmp_path, p2049, capsys):
    prefix, full = p2049
    viewer = load("batch_viewer")
    assert viewer.main([str(prefix), "--save_path", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "10 sequences" in err and "1024" in err and "--batch_size" in err
    assert "0..-1" not in err and "iterations none" not in err
    assert viewer.main([str(prefix), "--save_path", str(tmp_path / "b"), "--batch_size", "2",
                        "--start_iteration", "1", "--end_iteration", "3", "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "indicies.npy"), full[2:8])
    assert viewer.main([str(prefix), "--save_path", str(tmp_path / "c"), "--batch_size", "2",
                        "--end_iteration", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 iterations of 2 (0..4)" in err


@pytest.mark.slow
def test_batch_viewer_batch_size_real_subprocess(tmp_path, p2049):
    prefix, full = p2049
    proc = subprocess.run([sys.executable, str(BIN / "batch_viewer.py"), "--load_path",
                           str(prefix), "--save_path", str(tmp_path / "o"), "--batch_size", "5"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "indicies.npy"), full)
    # (its one-line refusal without --batch_size: the test above, in this process; a real
    # process's one-line errors: tests/test_batches_viewer.py)
