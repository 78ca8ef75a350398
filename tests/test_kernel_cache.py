"""Numba caches are keyed on the defining file only: the package drops this folder's caches
when any kernel source changed (pythia_data/kernels/__init__.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pythia_data.kernels import drop_stale_caches
from tests.conftest import subprocess_env


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


_LAZY_PROBE = r"""
import sys
import numpy as np
from numba.core import caching
import pythia_data.kernels as K
from pythia_data.tokenize import load_tokenizer
lazy = getattr(caching.Cache.load_overload, "_pythia_lazy", False)
tok = load_tokenizer(None, backend="cpu", workers=1)
ids = tok.encode_flat(["Hello wörld  \u00e9t\u00e9 42", "second doc\n\n"])[0].tolist()
registries = "numba.typed.typedlist" in sys.modules
from numba import njit
from numba.typed import List
@njit
def fresh(n):  # compiled here, not cached: numba's pipeline loads what it needs
    out = List()
    for i in range(n):
        out.append(i * 2)
    return out[n - 1]
print(lazy, registries, ids, fresh(5))
"""


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["lazy", "full"])
def test_lazy_numba_setup_loads_cached_kernels_and_still_compiles(setup):
    """PYTHIA_DATA_NUMBA_SETUP=lazy (what the command sets): cached kernels load with
    numba's runtime alone (its ~60 registry modules are not imported) and give the same
    ids; a kernel compiled afterwards still gets numba's whole set-up."""
    env = dict(subprocess_env())
    env.pop("PYTHIA_DATA_NUMBA_SETUP", None)
    if setup == "lazy":
        env["PYTHIA_DATA_NUMBA_SETUP"] = "lazy"
    out = subprocess.run([sys.executable, "-c", _LAZY_PROBE], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lazy, registries, *rest = out.stdout.split(" ", 2)
    from pythia_data.tokenize import load_tokenizer

    want = load_tokenizer(None, backend="cpu", workers=1).encode_flat(
        ["Hello wörld  \u00e9t\u00e9 42", "second doc\n\n"])[0].tolist()
    assert rest[0].strip() == f"{want} 8"
    import numba

    from pythia_data.kernels import LAZY_NUMBA

    checked = LAZY_NUMBA[0] <= tuple(int(x) for x in numba.__version__.split(".")[:2]) \
        <= LAZY_NUMBA[1]
    assert lazy == str(setup == "lazy" and checked)
    if setup == "lazy" and checked:
        assert registries == "False"  # the cached kernels ran without the registries


def test_lazy_numba_setup_keeps_numba_behaviour_on_unchecked_versions(monkeypatch):
    import numba
    from numba.core import caching

    from pythia_data import kernels

    before = caching.Cache.load_overload
    monkeypatch.setattr(numba, "__version__", "0.99.0")
    assert kernels.lazy_numba_setup() is False
    assert caching.Cache.load_overload is before
