"""Check existing cache files (e.g. published ones) against a fresh build."""

from __future__ import annotations

import os

import numpy as np

from pythia_data.errors import UsageError
from pythia_data.kernels import order as K
from pythia_data.order.cache import ARRAYS, cache_paths, resolve_sizes, user_cache_folder
from pythia_data.order.neox_v1 import build_arrays
from pythia_data.order.params import OrderParams


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """First flat index where a and b differ (chunked), None if equal."""
    fa = a.reshape(-1)
    fb = b.reshape(-1)
    step = 1 << 24
    for lo in range(0, fa.shape[0], step):
        diff = np.flatnonzero(np.asarray(fa[lo : lo + step]) != np.asarray(fb[lo : lo + step]))
        if diff.size:
            return lo + int(diff[0])
    return None


def verify_cache(source, params: OrderParams | None = None, index_dir=None, prefix=None,
                 progress=None) -> dict:
    """Compare existing cache files with a fresh build (in memory; nothing is written).

    Returns a report: ``ok`` and, per array, ``path``, ``exists``, ``dtype``, ``shape``,
    ``ok`` and ``first_difference`` (a flat index for sample_idx: row = index // 2);
    ``shuffle_idx`` also gets ``is_permutation`` (and ``first_not_permutation``)."""
    params = params or OrderParams()
    sizes, prefix, _ds = resolve_sizes(source, prefix)
    if prefix is None:
        if index_dir is None:
            raise UsageError("verify needs a dataset prefix or an index folder")
        prefix = "dataset"
    paths = cache_paths(prefix, params, index_dir)
    if index_dir is None and not any(os.path.isfile(paths[n]) for n in ARRAYS):
        fallback = cache_paths(prefix, params, user_cache_folder(prefix))
        if any(os.path.isfile(fallback[n]) for n in ARRAYS):  # read-only data's cache
            paths = fallback
    doc_idx, sample_idx, shuffle_idx, epochs, tokens = build_arrays(sizes, params, progress)
    fresh = {"doc_idx": doc_idx, "sample_idx": sample_idx, "shuffle_idx": shuffle_idx}
    report = {"ok": True, "num_epochs": epochs, "total_samples": int(shuffle_idx.shape[0]),
              "arrays": {}}
    for name in ARRAYS:
        entry = {"path": paths[name], "exists": os.path.isfile(paths[name])}
        report["arrays"][name] = entry
        if not entry["exists"]:
            entry["ok"] = False
            report["ok"] = False
            continue
        try:
            arr = np.load(paths[name], mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            entry.update(ok=False, error=f"unreadable: {exc}")
            report["ok"] = False
            continue
        want = fresh[name]
        entry["dtype"] = arr.dtype.name
        entry["shape"] = list(arr.shape)
        dtype_ok = arr.dtype == want.dtype or (
            name == "sample_idx" and arr.dtype == np.dtype("<i8")
        )
        entry["dtype_ok"] = bool(dtype_ok)
        if arr.shape != want.shape:
            entry["shape_ok"] = False
            n = min(arr.size, want.size)
            first = _first_difference(arr.reshape(-1)[:n], want.reshape(-1)[:n])
            entry["first_difference"] = n if first is None else first
        else:
            entry["shape_ok"] = True
            entry["first_difference"] = _first_difference(arr, want)
        if name == "shuffle_idx" and arr.ndim == 1:
            bad = K.first_not_permutation(np.ascontiguousarray(arr))
            entry["is_permutation"] = bad < 0
            entry["first_not_permutation"] = None if bad < 0 else bad
        entry["ok"] = bool(dtype_ok and entry["shape_ok"] and entry["first_difference"] is None)
        report["ok"] = report["ok"] and entry["ok"]
    meta_path = paths["meta"]
    report["sidecar"] = meta_path if os.path.isfile(meta_path) else None
    return report
