from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pythia_data.dataset import write_dataset

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


# The per-user caches (the compiled-tables cache of pythia_data.tokenize.tables_cache, the
# order index fallback folder) of this test process and the commands it starts: a folder of
# this run, removed at its end, never the user's ~/.cache.
if "PYTHIA_DATA_CACHE" not in os.environ:
    os.environ["PYTHIA_DATA_CACHE"] = tempfile.mkdtemp(prefix="pythia-data-test-cache-")
    atexit.register(shutil.rmtree, os.environ["PYTHIA_DATA_CACHE"], True)


# ------------------------------------------------------------------ test-local kernels
# A few tests compile harness kernels of their own (``@njit(cache=True)`` in tests/) around
# the package's private kernels. Numba keys such a cache on the test file alone, not on the
# kernels it compiles in, so tests/__pycache__'s numba caches are dropped whenever a source of
# pythia_data.kernels or of tests/ changed (the package does the same for its own caches, see
# pythia_data.kernels). Done once a run, by the process that starts it (not by xdist's
# workers, which could remove a cache file another worker has just written).
def drop_stale_test_kernel_caches() -> bool:
    import pythia_data.kernels

    tests = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for folder in (Path(pythia_data.kernels.__file__).resolve().parent, tests):
        for src in sorted(folder.glob("*.py")):
            digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    cache = tests / "__pycache__"
    stamp = cache / "test-kernels.sha256"
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except (OSError, UnicodeDecodeError):
        pass
    for name in cache.glob("*.nb[ic]") if cache.is_dir() else ():
        name.unlink(missing_ok=True)
    cache.mkdir(exist_ok=True)
    tmp = cache / f".test-kernels.sha256.{os.getpid()}"
    tmp.write_text(digest.hexdigest())
    os.replace(tmp, stamp)
    return True


if "PYTEST_XDIST_WORKER" not in os.environ:
    drop_stale_test_kernel_caches()


def position_docs(sizes, base: int = 100):
    """Documents whose token p of document d is d*base + p (order is checkable)."""
    return [np.arange(d * base, d * base + n, dtype=np.int64) for d, n in enumerate(sizes)]


@pytest.fixture
def small_dataset(tmp_path):
    sizes = [5, 17, 3, 40, 1, 9, 26, 12, 7, 2, 31, 4, 15, 8, 22, 6, 11, 3, 19, 10]
    prefix = write_dataset(tmp_path / "small", position_docs(sizes), dtype=np.uint16)
    return prefix, sizes


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------------------------- fsync
# Durability against power loss cannot be observed by a test, and each fsync costs ~10 ms
# on a VM disk: thousands of them made the suite minutes long. In this process fsync checks
# its descriptor (a bad one still fails) and returns; the code still calls it where it
# should (tests that count or fail fsync calls patch os.fsync themselves, over this).
# PYTHIA_TEST_REAL_FSYNC=1 keeps the real one. Subprocesses are unaffected.
_real_fsync = os.fsync


def _fsync_checked(fd):
    os.fstat(fd)


@pytest.fixture(autouse=True)
def _cheap_fsync(monkeypatch):
    if os.environ.get("PYTHIA_TEST_REAL_FSYNC") != "1":
        monkeypatch.setattr(os, "fsync", _fsync_checked)


def run(*args, input=None):
    """The CLI in-process (click's runner), every argument as a string."""
    from click.testing import CliRunner

    from pythia_data.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def one_line_error(result, code, *needles):
    """``result`` failed with exit ``code`` and printed one ``pythia-data: error:`` line
    holding every needle; returns that line."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pythia-data: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
