"""Driving a job: run the units a store still lacks on an executor, then merge the parts
in unit order into the output a single process writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from pythia_data.dataset import DatasetBuilder
from pythia_data.errors import InputError, OutputError
from pythia_data.format.header import read_index_header
from pythia_data.io.atomic import AtomicOutput
from pythia_data.jobs.executors import Executor
from pythia_data.jobs.plan import Unit
from pythia_data.jobs.store import JobStore
from pythia_data.progress import ProgressFactory, task

__all__ = ["concat_parts", "merge_dataset_parts", "run_units"]

#: Bytes per read when parts are concatenated.
_CHUNK = 8 << 20


def run_units(store: JobStore, executor: Executor, fn: Callable[[Unit], dict], *,
              progress: ProgressFactory | None = None, desc: str = "units") -> list[dict]:
    """Run every unit of ``store`` without a valid completion record through ``executor``
    (``fn(unit)`` writes the part and the record) and return all the records in unit
    order. Progress counts the units' input bytes, those done earlier included."""
    todo, done = store.pending()
    total = sum(u.weight for u in store.units)
    with task(progress, desc, total, "B") as update:
        if update is not None and done:
            update(sum(u.weight for u in store.units if u.id in done))
        executor.run(todo, fn, progress=update)
    records = []
    for unit in store.units:
        rec = store.record(unit)
        if rec is None:
            raise OutputError(f"unit {unit.id} finished without a valid completion record "
                              f"in {store.folder}")
        records.append(rec)
    store.check_inputs_unchanged()
    return records


def merge_dataset_parts(store: JobStore, records: Sequence[dict], prefix: str, dtype, *,
                        overwrite: bool = True) -> None:
    """Concatenate the units' ``.bin``/``.idx`` parts in unit order into ``prefix`` (the
    same bytes one builder fed every document writes), checking each part's xxh3."""
    with DatasetBuilder(prefix, dtype, overwrite=overwrite) as builder:
        for unit, rec in zip(store.units, records):
            bin_path = store.check_part(unit, rec, ".bin")
            idx = store.check_part(unit, rec, ".idx")
            builder.add_index(_Part(bin_path, idx, builder.dtype))


class _Part:
    """A part written by this job, read for the merge with plain numpy: what
    :meth:`DatasetBuilder.add_index` needs of a dataset (its index arrays and its single
    ``.bin``), without :class:`IndexedDataset`'s validation and token-source set-up (the
    part was written by the builder and its xxh3 was just checked)."""

    def __init__(self, bin_path: str, idx_path: str, dtype):
        header = read_index_header(idx_path)
        if header.dtype != dtype:
            raise InputError(f"{idx_path}: {header.dtype} tokens, the job writes {dtype}")
        self.dtype = header.dtype
        self.bin_paths = [bin_path]
        self.bin_bytes = os.path.getsize(bin_path)
        n, d = header.num_sequences, header.num_doc_idx
        with open(idx_path, "rb") as fh:
            fh.seek(header.sizes_offset)
            self.sizes = np.frombuffer(fh.read(4 * n), dtype="<i4")
            fh.seek(header.doc_idx_offset)
            self.doc_idx = np.frombuffer(fh.read(8 * d), dtype="<i8")

    def read_bytes(self, start: int, nbytes: int) -> np.ndarray:
        with open(self.bin_paths[0], "rb") as fh:
            fh.seek(start)
            return np.frombuffer(fh.read(nbytes), dtype=np.uint8)


def concat_parts(store: JobStore, records: Sequence[dict], suffix: str,
                 out: AtomicOutput) -> int:
    """Append the units' ``suffix`` parts in unit order to ``out`` (checked against their
    xxh3 first); returns the bytes written. ``out`` is committed by the caller."""
    total = 0
    for unit, rec in zip(store.units, records):
        path = store.check_part(unit, rec, suffix)
        with open(path, "rb") as fh:
            while True:
                data = fh.read(_CHUNK)
                if not data:
                    break
                out.write(data)
                total += len(data)
    return total
