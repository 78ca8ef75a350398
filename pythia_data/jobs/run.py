"""Driving a job: run the units a store still lacks on an executor, then merge the parts
in unit order into the output a single process writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pythia_data.dataset import DatasetBuilder, IndexedDataset
from pythia_data.errors import OutputError
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
            store.check_part(unit, rec, ".bin")
            idx = store.check_part(unit, rec, ".idx")
            with IndexedDataset(os.path.splitext(idx)[0]) as part:
                builder.add_index(part)


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
