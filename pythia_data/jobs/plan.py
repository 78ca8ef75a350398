"""Work units: how a job's input is cut into pieces that run anywhere and resume.

A :class:`Unit` is one piece of a job's input:

* ``lines``: bytes ``[start, end)`` of a JSON-lines file, both ends at line boundaries
  (``start`` is 0 or just after a ``\\n``; ``end`` is just after a ``\\n`` or the file's end);
* ``file``: a whole file (``.jsonl.zst`` cannot be entered in the middle, a ``.txt`` file is
  one document, a file hashed by ``checksum`` is one digest);
* ``documents``: documents ``[start, end)`` of an MMIDIDX dataset.

The cut is deterministic: the same inputs and the same unit size always give the same units,
so the plan stored with the job (:mod:`pythia_data.jobs.store`) says exactly what a rerun
must still do. A unit's ``weight`` is the bytes it reads (progress counts it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pythia_data.errors import InputError, UsageError

__all__ = [
    "DEFAULT_UNIT_BYTES",
    "InputFile",
    "Unit",
    "describe_input",
    "parse_size",
    "plan_dataset",
    "plan_files",
]

#: Default unit size: big enough that per-unit bookkeeping is noise, small enough that a
#: crash loses little and 2 x cores units keep every worker busy on a few GB.
DEFAULT_UNIT_BYTES = 64 << 20

#: How far planning reads past a nominal cut to find the end of the line.
_SCAN = 1 << 16


@dataclass(frozen=True)
class InputFile:
    """An input as the plan saw it: absolute path, size and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Unit:
    """One work unit (see the module docstring). ``id`` is its position in the plan."""

    id: int
    kind: str
    path: str
    start: int
    end: int
    weight: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Unit:
        return cls(int(d["id"]), str(d["kind"]), str(d["path"]), int(d["start"]),
                   int(d["end"]), int(d["weight"]))

    @property
    def name(self) -> str:
        """File-name stem of this unit's part and completion record (``u00042``)."""
        return f"u{self.id:05d}"


def parse_size(text: str | int) -> int:
    """``64M``, ``1G``, ``512k``, ``1000000`` -> bytes (binary multiples), >= 1."""
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip().upper().removesuffix("B").removesuffix("I")
        mult = 1
        for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
            if s.endswith(suffix):
                s, mult = s[:-1], m
                break
        try:
            value = int(float(s) * mult)
        except ValueError:
            raise UsageError(f"not a size: {text!r} (give bytes, or e.g. 64M, 1G)") from None
    if value < 1:
        raise UsageError(f"a unit size must be at least 1 byte, not {text!r}")
    return value


def describe_input(path: str) -> InputFile:
    """Stat ``path`` for the plan (InputError naming it if it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return InputFile(os.path.abspath(path), int(st.st_size), int(st.st_mtime_ns))


def _line_cuts(path: str, size: int, unit_bytes: int) -> list[int]:
    """Cut offsets of ``path`` (first 0, last ``size``): each cut after the first is the
    position just after the first ``\\n`` at or after ``previous + unit_bytes - 1``."""
    cuts = [0]
    try:
        with open(path, "rb") as fh:
            while True:
                pos = cuts[-1] + unit_bytes - 1
                if pos >= size - 1:
                    break
                fh.seek(pos)
                found = -1
                while True:
                    chunk = fh.read(_SCAN)
                    if not chunk:
                        break
                    k = chunk.find(b"\n")
                    if k >= 0:
                        found = pos + k
                        break
                    pos += len(chunk)
                if found < 0 or found + 1 >= size:
                    break
                cuts.append(found + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    cuts.append(size)
    return cuts


def plan_files(paths: Sequence[str], unit_bytes: int = DEFAULT_UNIT_BYTES,
               ) -> tuple[list[InputFile], list[Unit]]:
    """Units over text inputs: ``.jsonl`` files in line-aligned byte ranges of about
    ``unit_bytes``; ``.jsonl.zst`` and ``.txt`` files (and any other) whole. An empty
    file is still one (empty) unit, so every input appears in the plan."""
    if unit_bytes < 1:
        raise UsageError("a unit size must be at least 1 byte")
    inputs: list[InputFile] = []
    units: list[Unit] = []
    for path in paths:
        info = describe_input(path)
        inputs.append(info)
        if info.path.endswith(".jsonl") and info.size > unit_bytes:
            cuts = _line_cuts(info.path, info.size, unit_bytes)
            for a, b in zip(cuts[:-1], cuts[1:]):
                units.append(Unit(len(units), "lines", info.path, a, b, b - a))
        else:
            units.append(Unit(len(units), "file", info.path, 0, info.size, info.size))
    return inputs, units


def plan_dataset(prefix: str, doc_idx: np.ndarray, pointers: np.ndarray, bin_bytes: int,
                 unit_bytes: int = DEFAULT_UNIT_BYTES) -> list[Unit]:
    """Units of whole documents of a dataset, each about ``unit_bytes`` of ``.bin``.

    ``doc_idx`` (D+1 entries, first 0, last N) and ``pointers`` (N byte offsets) are the
    dataset's index arrays (memmaps are fine: only ``searchsorted`` touches them). Cut ``k``
    is the first document whose first sequence starts at or after ``k * unit_bytes``."""
    n_docs = len(doc_idx) - 1
    n_seq = len(pointers)
    if n_docs <= 0:
        return [Unit(0, "documents", prefix, 0, 0, 0)]
    cuts = [0]
    k = 1
    while k * unit_bytes < bin_bytes:
        seq = int(np.searchsorted(pointers, k * unit_bytes, side="left"))
        if seq >= n_seq:
            break
        doc = int(np.searchsorted(doc_idx, seq, side="left"))
        if doc > cuts[-1] and doc < n_docs:
            cuts.append(doc)
        k += 1
    cuts.append(n_docs)

    def offset(doc: int) -> int:
        seq = int(doc_idx[doc])
        return bin_bytes if seq >= n_seq else int(pointers[seq])

    units = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        units.append(Unit(len(units), "documents", prefix, a, b, offset(b) - offset(a)))
    return units
