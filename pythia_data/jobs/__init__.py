"""Pile-scale jobs: a deterministic plan of work units, one part and one completion record
per unit in a job folder, executors that only schedule (local processes/threads, Ray),
and a merge of the parts in unit order into the bytes a single process writes.

See docs/scale.md for running big jobs and ``pythia_data/jobs/store.py`` for the folder.
"""

from pythia_data.jobs.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    RayExecutor,
    make_executor,
)
from pythia_data.jobs.plan import (
    DEFAULT_UNIT_BYTES,
    InputFile,
    Unit,
    describe_input,
    parse_size,
    plan_dataset,
    plan_files,
)
from pythia_data.jobs.run import PartMerger, concat_parts, merge_dataset_parts, run_units
from pythia_data.jobs.store import JobStore, part_path, record_unit

__all__ = [
    "PartMerger",
    "DEFAULT_UNIT_BYTES",
    "EXECUTORS",
    "Executor",
    "InputFile",
    "JobStore",
    "LocalExecutor",
    "RayExecutor",
    "Unit",
    "concat_parts",
    "describe_input",
    "make_executor",
    "merge_dataset_parts",
    "parse_size",
    "part_path",
    "plan_dataset",
    "plan_files",
    "record_unit",
    "run_units",
]
