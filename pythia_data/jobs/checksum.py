"""``checksum`` as work units: one unit per file, its digest in the completion record.

A file's SHA256 cannot be split (the hash of a byte range does not combine into the
file's), so the unit is the whole file. With a job folder, a rerun after an interruption
hashes only the files without a valid record (same path, size and mtime); without one the
executor just spreads the files (local threads: hashing releases the GIL; or Ray tasks
reading a shared filesystem).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial

from pythia_data.errors import InputError
from pythia_data.integrity.hashing import hash_file
from pythia_data.jobs.executors import Executor
from pythia_data.jobs.plan import InputFile, Unit, describe_input
from pythia_data.jobs.run import run_units
from pythia_data.jobs.store import JobStore, record_unit
from pythia_data.progress import ProgressFactory

__all__ = ["hash_files"]


def _hash(algorithm: str, unit: Unit) -> str:
    try:
        return hash_file(unit.path, algorithm)
    except OSError as exc:
        raise InputError(f"cannot read {unit.path}: {exc.strerror or exc}") from None


def _hash_unit(folder: str, inputs: tuple[InputFile, ...], algorithm: str, unit: Unit) -> dict:
    digest = _hash(algorithm, unit)
    mine = [i for i in inputs if i.path == unit.path]
    return record_unit(folder, unit, mine, [], {"digest": digest})


def hash_files(files: Sequence[str | os.PathLike], algorithm: str, executor: Executor, *,
               job_dir: str | os.PathLike | None = None, keep_job: bool = False,
               progress: ProgressFactory | None = None) -> list[str]:
    """The digests of ``files`` (in order), hashed by ``executor``; with ``job_dir`` the
    digests are recorded there as they finish and a rerun reuses them (the folder is
    removed once every file is hashed, unless ``keep_job``)."""
    inputs = [describe_input(os.fspath(p)) for p in files]
    units = [Unit(k, "file", i.path, 0, i.size, i.size) for k, i in enumerate(inputs)]
    if job_dir is None:
        with _task(progress, sum(u.weight for u in units)) as update:
            return executor.run(units, partial(_hash, algorithm), progress=update)
    with JobStore(job_dir, "checksum", {"algorithm": algorithm}, inputs, units) as store, \
            store.running():
        fn = partial(_hash_unit, store.folder, tuple(inputs), algorithm)
        records = run_units(store, executor, fn, progress=progress, desc="checksum")
        digests = [r["result"]["digest"] for r in records]
        if not keep_job:
            store.remove()
    return digests


def _task(progress, total):
    from pythia_data.progress import task

    return task(progress, "checksum", total, "B")
