"""Structural checks of GPT-NeoX index files (``*_doc_idx.npy``, ``*_sample_idx.npy``,
``*_shuffle_idx.npy``) as published in ``EleutherAI/pile-preshuffled-seeds``.

A hash only proves a file is what was uploaded; pythia #190 is a published ``shuffle_idx``
that is mostly zeros. These checks read each file in chunks through a memory map:

- ``shuffle_idx``: a permutation of ``0 .. n-1`` (values in range, none repeated: a bit set
  of n bits, n/8 bytes);
- ``doc_idx``: values ``>= 0``, every document ``0 .. max`` appearing the same number of
  times (the number of epochs; one uint16 counter per document);
- ``sample_idx``: shape ``(T + 1, 2)``, starts at ``(0, 0)``, rows increasing (document
  position never decreases; the offset increases within a document);
- across the files of one run: ``len(shuffle_idx) == len(sample_idx) - 1`` and sample_idx
  points inside doc_idx.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 1 << 22  # elements per chunk
KINDS = ("shuffle_idx", "doc_idx", "sample_idx")


@dataclass
class CheckResult:
    path: str
    kind: str
    ok: bool
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "ok": self.ok, "message": self.message}


def kind_of(name: str) -> str | None:
    for k in KINDS:
        if name.endswith(f"_{k}.npy"):
            return k
    return None


def _open(path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a readable .npy array ({exc})") from None


def _chunks(n: int, progress: Callable[[int], None] | None, itemsize: int):
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        yield start, stop
        if progress is not None:
            progress((stop - start) * itemsize)


def check_shuffle_idx(a: np.ndarray, progress=None) -> str | None:
    if a.ndim != 1 or a.dtype.kind not in "iu":
        return f"expected a 1-D integer array, got {a.dtype} shape {a.shape}"
    n = int(a.shape[0])
    seen = np.zeros((n + 7) // 8, dtype=np.uint8)
    zeros = 0
    problem = None
    for start, stop in _chunks(n, progress, a.dtype.itemsize):
        c = np.asarray(a[start:stop]).astype(np.int64, copy=False)
        zeros += int(np.count_nonzero(c == 0))
        if problem is not None:
            continue
        bad = np.flatnonzero((c < 0) | (c >= n))
        if bad.size:
            problem = f"entry {start + int(bad[0])} = {int(c[bad[0]])} is outside 0..{n - 1}"
            continue
        s = np.sort(c)
        dup = np.flatnonzero(s[1:] == s[:-1])
        byte, bit = s >> 3, (np.uint8(1) << (s & 7).astype(np.uint8))
        again = np.flatnonzero(seen[byte] & bit)
        if dup.size or again.size:
            v = int(s[dup[0]]) if dup.size else int(s[again[0]])
            problem = f"value {v} appears more than once"
            continue
        np.bitwise_or.at(seen, byte, bit)
    if problem is not None:
        return f"not a permutation of 0..{n - 1}: {problem}; {zeros:,} of {n:,} entries " \
               f"({100.0 * zeros / max(n, 1):.1f} %) are 0"
    return None


def check_doc_idx(a: np.ndarray, progress=None) -> str | None:
    if a.ndim != 1 or a.dtype.kind not in "iu":
        return f"expected a 1-D integer array, got {a.dtype} shape {a.shape}"
    n = int(a.shape[0])
    if n == 0:
        return "empty"
    lo, hi = None, None
    for start, stop in _chunks(n, None, 0):
        c = np.asarray(a[start:stop])
        cl, ch = int(c.min()), int(c.max())
        lo = cl if lo is None else min(lo, cl)
        hi = ch if hi is None else max(hi, ch)
    if lo < 0:
        return f"negative document index {lo}"
    docs = hi + 1
    if n % docs:
        return f"{n:,} entries is not a whole number of epochs over {docs:,} documents"
    epochs = n // docs
    if epochs > 65535:
        return f"{epochs} epochs over {docs:,} documents: implausible"
    counts = np.zeros(docs, dtype=np.uint16)
    for start, stop in _chunks(n, progress, a.dtype.itemsize):
        np.add.at(counts, np.asarray(a[start:stop]).astype(np.intp, copy=False), 1)
    wrong = np.flatnonzero(counts != epochs)
    if wrong.size:
        d = int(wrong[0])
        return (f"document {d} appears {int(counts[d])} times, expected {epochs} "
                f"({wrong.size:,} documents wrong)")
    return None


def check_sample_idx(a: np.ndarray, progress=None) -> str | None:
    if a.ndim != 2 or a.shape[1] != 2 or a.dtype.kind not in "iu":
        return f"expected an integer array of shape (T+1, 2), got {a.dtype} shape {a.shape}"
    n = int(a.shape[0])
    if n == 0:
        return "empty"
    if int(a[0, 0]) != 0 or int(a[0, 1]) != 0:
        return f"first row is ({int(a[0, 0])}, {int(a[0, 1])}), expected (0, 0)"
    prev = None
    for start, stop in _chunks(n, progress, 2 * a.dtype.itemsize):
        c = np.asarray(a[start:stop]).astype(np.int64, copy=False)
        if prev is not None:
            c = np.concatenate([prev[None, :], c])
        d_doc = np.diff(c[:, 0])
        d_off = np.diff(c[:, 1])
        bad = np.flatnonzero((d_doc < 0) | ((d_doc == 0) & (d_off <= 0)) | (c[1:, 1] < 0))
        if bad.size:
            row = start + int(bad[0]) + (0 if prev is not None else 1)
            return f"row {row} does not advance past the row before it"
        prev = c[-1]
    return None


_CHECKS = {"shuffle_idx": check_shuffle_idx, "doc_idx": check_doc_idx,
           "sample_idx": check_sample_idx}


def check_file(path: str | os.PathLike[str], progress=None) -> CheckResult:
    """Check one index file (its kind from its name)."""
    p = Path(path)
    kind = kind_of(p.name)
    if kind is None:
        return CheckResult(str(p), "unknown", True, "not an index file: not checked")
    try:
        a = _open(p)
        problem = _CHECKS[kind](a, progress)
    except ValueError as exc:
        problem = str(exc)
    return CheckResult(str(p), kind, problem is None, problem or "ok")


def check_run(paths: Iterable[str | os.PathLike[str]]) -> list[CheckResult]:
    """Consistency across the three files of each run (same name stem) among ``paths``."""
    runs: dict[str, dict[str, Path]] = {}
    for path in paths:
        p = Path(path)
        kind = kind_of(p.name)
        if kind is not None:
            stem = str(p.parent / p.name[: -len(f"_{kind}.npy")])
            runs.setdefault(stem, {})[kind] = p
    out = []
    for stem, files in sorted(runs.items()):
        if "sample_idx" not in files:
            continue
        try:
            sample = _open(files["sample_idx"])
            if "shuffle_idx" in files:
                shuffle = _open(files["shuffle_idx"])
                if shuffle.ndim == 1 and sample.ndim == 2 and shuffle.shape[0] != sample.shape[0] - 1:
                    out.append(CheckResult(stem, "run", False,
                                           f"shuffle_idx has {shuffle.shape[0]:,} entries, "
                                           f"sample_idx {sample.shape[0]:,} rows (expected one more)"))
                    continue
            if "doc_idx" in files and sample.ndim == 2 and sample.shape[0]:
                doc = _open(files["doc_idx"])
                last = int(sample[-1, 0])
                if doc.ndim == 1 and last >= doc.shape[0]:
                    out.append(CheckResult(stem, "run", False,
                                           f"sample_idx points at doc_idx position {last:,}, "
                                           f"doc_idx has {doc.shape[0]:,} entries"))
                    continue
        except ValueError as exc:
            out.append(CheckResult(stem, "run", False, str(exc)))
            continue
        out.append(CheckResult(stem, "run", True, "ok"))
    return out
