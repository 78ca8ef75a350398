"""Numba caches are keyed on the defining file only: the package drops this folder's caches
when any kernel source changed (pythia_data/kernels/__init__.py)."""

from __future__ import annotations

from pythia_data.kernels import drop_stale_caches


def _folder(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    return cache


def _caches(cache):
    for name in ("a.f-1.py311.nbi", "a.f-1.py311.1.nbc"):
        (cache / name).write_bytes(b"compiled")
    (cache / "a.cpython-311.pyc").write_bytes(b"bytecode")


def test_a_changed_callee_file_drops_every_kernel_cache(tmp_path):
    cache = _folder(tmp_path)
    _caches(cache)
    assert drop_stale_caches(tmp_path)  # no fingerprint yet: unknown caches are dropped
    assert sorted(p.name for p in cache.iterdir()) == ["a.cpython-311.pyc",
                                                      "pythia-kernels.sha256"]
    _caches(cache)
    assert not drop_stale_caches(tmp_path)  # same sources: caches kept
    assert (cache / "a.f-1.py311.nbi").exists()
    (tmp_path / "b.py").write_text("y = 3\n")  # only the callee's file changes
    assert drop_stale_caches(tmp_path)
    assert not list(cache.glob("*.nb[ic]"))
    assert (cache / "a.cpython-311.pyc").exists()  # Python's own caches are not touched


def test_no_cache_folder_and_unreadable_sources_never_raise(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    assert not drop_stale_caches(tmp_path)  # nothing to remove, a fingerprint is recorded
    assert (tmp_path / "__pycache__" / "pythia-kernels.sha256").exists()
    (tmp_path / "a.py").chmod(0)
    drop_stale_caches(tmp_path)  # as root the file stays readable; either way no exception
