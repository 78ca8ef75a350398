"""``tokenize``, ``retokenize`` and ``detokenize`` as work units (see :mod:`pythia_data.jobs`).

Each command plans its input into units (text files: line-aligned byte ranges of ``.jsonl``,
whole ``.jsonl.zst``/``.txt`` files; datasets: document ranges), runs them on an executor
(every unit reads its slice, encodes or decodes it and writes its own part plus a
completion record into the job folder ``OUTPUT.job``), and merges the parts in unit order:
the output is byte for byte what one process writes, whatever the unit size, the number of
workers or the executor. A run killed at any point resumes: the rerun skips the units
whose records are valid. The folder is removed after a successful merge.

Everything a worker needs travels in a small picklable context; the tokenizer is loaded
from its ``tokenizer.json`` once per worker process (or thread).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from pythia_data.cancel import in_worker_thread
from pythia_data.dataset import IndexedDataset
from pythia_data.errors import InputError, OutputExistsError, UsageError
from pythia_data.format.header import strip_suffix
from pythia_data.integrity.hashing import hash_file
from pythia_data.io.atomic import AtomicOutput, refuse_overlap
from pythia_data.jobs import (
    DEFAULT_UNIT_BYTES,
    Executor,
    InputFile,
    JobStore,
    PartMerger,
    Unit,
    concat_parts,
    describe_input,
    merge_dataset_parts,
    part_path,
    plan_dataset,
    plan_files,
    record_unit,
    run_units,
)
from pythia_data.progress import ProgressFactory
from pythia_data.tokenize import pipeline as _pl
from pythia_data.tokenize.base import _check_errors

__all__ = [
    "JOB_SUFFIX",
    "TokenizerRef",
    "detokenize_units",
    "retokenize_units",
    "tokenize_units",
    "unit_batches",
    "unit_documents",
]

#: The job folder of an output is its name plus this suffix.
JOB_SUFFIX = ".job"


# --------------------------------------------------------------------------- tokenizers


@dataclass(frozen=True)
class TokenizerRef:
    """How a worker loads the tokenizer: its ``tokenizer.json``, backend and options."""

    path: str
    name: str
    backend: str
    errors: str = "strict"
    threads: int | None = None

    @classmethod
    def of(cls, tokenizer, *, threads: int | None = None) -> TokenizerRef:
        """The reference to ``tokenizer``; units this thread runs itself use ``tokenizer``."""
        config = getattr(tokenizer, "config", None)
        if config is None:
            raise UsageError(f"{tokenizer!r} has no tokenizer.json to hand to workers")
        ref = cls(os.path.abspath(os.fspath(config.path)), tokenizer.name, tokenizer.backend,
                  getattr(tokenizer, "errors", "strict"), threads)
        _tls.__dict__.setdefault("tokenizers", {})[ref] = tokenizer
        return ref

    def fingerprint(self) -> str:
        """What the output depends on: the tokenizer.json's bytes (not the backend: all
        backends give the same ids)."""
        return hash_file(self.path, "xxh3")

    def load(self):
        cache = _tls.__dict__.setdefault("tokenizers", {})
        tok = cache.get(self)
        if tok is None:
            from pythia_data.tokenize import load_tokenizer

            options = {"errors": self.errors}
            if self.threads and self.backend in ("cpu", "hf"):
                options["workers"] = self.threads
            tok = load_tokenizer(self.path, backend=self.backend, **options)
            tok.name = self.name
            cache[self] = tok
            from pythia_data.jobs.startup import settle

            settle()  # a worker process's tokenizer lives as long as the worker
        return tok


_tls = threading.local()


def default_threads(executor: Executor) -> int:
    """Tokenizer threads per unit: the machine's cores shared by the local workers."""
    cores = os.cpu_count() or 1
    if executor.name == "local":
        return max(1, cores // max(executor.workers, 1))
    return 1


# --------------------------------------------------------------------------- reading a unit

#: A text unit's first batch is this fraction of the full size (64 KiB of 16 MiB): every
#: unit's encoder waits for its first batch to be read, and its last is small too (the
#: ramp down of :class:`~pythia_data.tokenize.pipeline._Ramp`).
UNIT_RAMP = 256


class _Slice(io.RawIOBase):
    """``size`` bytes of an open binary file from its current position."""

    def __init__(self, fh, size: int):
        super().__init__()
        self._fh = fh
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        n = self._fh.readinto(view)
        self._left -= n or 0
        return n or 0


def _lines_before(path: str, offset: int) -> int:
    count = 0
    with open(path, "rb") as fh:
        left = offset
        while left > 0:
            chunk = fh.read(min(left, 1 << 22))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def unit_documents(unit: Unit, *, key: str = "text", errors: str = "strict"
                   ) -> Iterator[_pl.Document]:
    """The documents of a text unit, in order (empty ones included), read exactly as
    :func:`~pythia_data.tokenize.pipeline.read_documents` reads the whole file; errors
    name the file and its line number counted from the start of the file."""
    if unit.kind == "file":
        yield from _pl.read_documents([unit.path], key=key, errors=errors)
        return
    with _unit_slice(unit) as reader:
        yield from _pl.jsonl_documents(reader, unit.path, key, errors,
                                       file_start=unit.start == 0)


def unit_batches(unit: Unit, *, key: str = "text", errors: str = "strict",
                 batch_documents: int = _pl.BATCH_DOCUMENTS,
                 batch_chars: int = _pl.BATCH_CHARS) -> Iterator[_pl.TextBatch]:
    """The documents of :func:`unit_documents` as
    :class:`~pythia_data.tokenize.pipeline.TextBatch` es (see
    :func:`~pythia_data.tokenize.pipeline.read_batches`): what a tokenize unit encodes."""
    if unit.kind == "file":
        yield from _pl.read_batches([unit.path], key=key, errors=errors,
                                    batch_documents=batch_documents, batch_chars=batch_chars)
        return
    with _unit_slice(unit) as reader:
        yield from _pl.read_jsonl_batches(reader, unit.path, key, errors,
                                          file_start=unit.start == 0,
                                          batch_documents=batch_documents,
                                          batch_chars=batch_chars, ramp=UNIT_RAMP,
                                          size=unit.end - unit.start)


@contextlib.contextmanager
def _unit_slice(unit: Unit):
    """The bytes of a ``lines`` unit as a buffered binary reader; an InputError raised
    while it is read names the line of the file (not of the slice)."""
    if unit.kind != "lines":
        raise UsageError(f"unit {unit.id} is a {unit.kind} unit, not text")
    try:
        fh = open(unit.path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"{unit.path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        fh.seek(unit.start)
        reader = io.BufferedReader(_Slice(fh, unit.end - unit.start), buffer_size=1 << 20)
        try:
            yield reader
        except InputError as exc:
            if unit.start == 0:
                raise
            # line numbers inside the slice -> line numbers of the file
            pattern = re.compile(re.escape(unit.path) + r":(\d+)")
            base = _lines_before(unit.path, unit.start)
            text = pattern.sub(lambda m: f"{unit.path}:{int(m.group(1)) + base}", str(exc), 1)
            raise InputError(text) from None


# --------------------------------------------------------------------------- writing a part


# --------------------------------------------------------------------------- the unit functions


@dataclass(frozen=True)
class _Context:
    """What every unit of one job needs (pickled to the workers)."""

    folder: str
    inputs: tuple[InputFile, ...]
    tokenizer: TokenizerRef | None = None
    old_tokenizer: TokenizerRef | None = None
    key: str = "text"
    errors: str = "strict"
    append_eod: bool = False
    dataset: str = ""
    extra: dict = field(default_factory=dict)

    def inputs_of(self, unit: Unit) -> list[InputFile]:
        if unit.kind == "documents":
            return list(self.inputs)
        return [i for i in self.inputs if i.path == unit.path]


def _tokenize_unit(ctx: _Context, unit: Unit) -> dict:
    cpu = _cpu()
    tok = ctx.tokenizer.load()
    prefix = part_path(ctx.folder, unit, "")
    digests: dict = {}  # the part's xxh3, taken as it is written: not read back
    counts = _pl.write_part(unit_batches(unit, key=ctx.key, errors=ctx.errors), tok, prefix,
                            append_eod=ctx.append_eod, durable=False, digests=digests)
    counts.update(_worker_stats(cpu))
    return record_unit(ctx.folder, unit, ctx.inputs_of(unit), [prefix + ".bin",
                                                               prefix + ".idx"], counts,
                       digests)


def _retokenize_unit(ctx: _Context, unit: Unit) -> dict:
    cpu = _cpu()
    old = ctx.old_tokenizer.load()
    new = ctx.tokenizer.load()
    prefix = part_path(ctx.folder, unit, "")
    with IndexedDataset(ctx.dataset) as ds:
        counts = _pl.retokenize_range(ds, old, new, prefix, unit.start, unit.end,
                                      eod_id=ctx.extra.get("eod_id"), durable=False)
    counts.update(_worker_stats(cpu))
    return record_unit(ctx.folder, unit, ctx.inputs_of(unit), [prefix + ".bin",
                                                               prefix + ".idx"], counts)


def _detokenize_unit(ctx: _Context, unit: Unit) -> dict:
    cpu = _cpu()
    tok = ctx.tokenizer.load()
    path = part_path(ctx.folder, unit, ".jsonl")
    with IndexedDataset(ctx.dataset) as ds:
        out = AtomicOutput(path)
        try:
            counts = _pl.detokenize_range(ds, tok, out, unit.start, unit.end)
        except BaseException:
            out.abort()
            raise
        out.commit(sync=False)  # a part: checked by its xxh3 at the merge
    counts.update(_worker_stats(cpu))
    return record_unit(ctx.folder, unit, ctx.inputs_of(unit), [path], counts)


# --------------------------------------------------------------------------- drivers


def _sum(records: Sequence[dict], *keys: str) -> dict:
    return {k: int(sum(r["result"].get(k, 0) for r in records)) for k in keys}


def _peak_rss() -> int:
    """This worker's peak resident memory so far, in bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _cpu() -> float:
    """CPU seconds of this worker: its process, or its own thread when it is one of a
    pool's worker threads (the process's figure then counts the other units too)."""
    if in_worker_thread():
        return time.thread_time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _worker_stats(cpu_before: float) -> dict:
    """What a unit's record says about the worker that ran it: its pid, peak RSS, its CPU
    seconds so far and during the unit (see :func:`_cpu`: a worker thread's own; the
    tokenizer threads it starts, with fewer workers than cores, are not counted)."""
    now = _cpu()
    return {"worker_pid": os.getpid(), "worker_peak_rss": _peak_rss(),
            "worker_cpu_seconds": round(now, 3), "cpu_seconds": round(now - cpu_before, 3)}


def _merge_then_finish(store: JobStore, keep_job: bool, outputs: Sequence[str],
                       merge) -> None:
    """Run ``merge`` (it commits the files ``outputs``), then delete the job folder unless
    it is kept. A Ctrl-C delivered after the commit (at the end of the commit's deferred
    block, or just after it) still deletes the folder: the job is done, and a folder left
    beside a complete dataset would only be litter. "Committed" is told by every output
    existing with a modification time from this merge (their writers hold the output
    locks, so no one else can have written them since; 0.1 s of slack for timestamps that
    lag the clock by a tick). Misjudged, the cost is a rerun that redoes the units, never
    a wrong output."""
    begun = time.time_ns() - 100_000_000
    try:
        merge()
    except BaseException:
        if not keep_job and _written_since(outputs, begun):
            store.remove()
        raise
    if not keep_job:
        store.remove()


def _run_and_merge(store: JobStore, executor: Executor, fn, pending: tuple,
                   out_prefix: str, dtype, *, overwrite: bool, keep_job: bool,
                   progress: ProgressFactory | None, desc: str) -> tuple[list, dict, float]:
    """Run the job's units (``pending``: ``store.pending()`` as the caller read it), their
    dataset parts merged into ``out_prefix`` while they run (:class:`PartMerger`) and
    committed after the last; returns the records, the job info and the seconds the merge
    took after the units."""
    todo = pending[0]
    merger = PartMerger(store, out_prefix, dtype, overwrite=overwrite,
                        fresh=[u.id for u in todo])
    try:
        records = run_units(store, executor, fn, progress=progress, desc=desc,
                            on_unit=merger.advance, pending=pending)
        info = _job_info(store, executor, len(todo), records)
        ran = time.monotonic()
        _merge_then_finish(store, keep_job, _dataset_files(out_prefix),
                           lambda: merge_dataset_parts(store, records, out_prefix, dtype,
                                                       overwrite=overwrite, merger=merger))
    finally:
        merger.abort()
    return records, info, time.monotonic() - ran


def _dataset_files(prefix: str) -> list[str]:
    return [prefix + ".bin", prefix + ".idx"]


def _written_since(paths: Sequence[str], ns: int) -> bool:
    try:
        return all(os.stat(path).st_mtime_ns >= ns for path in paths)
    except OSError:
        return False


def _job_info(store: JobStore, executor: Executor, todo_before: int,
              records: Sequence[dict]) -> dict:
    return {"units": len(store.units), "units_run": todo_before,
            "units_resumed": len(store.units) - todo_before, "executor": executor.name,
            "workers": executor.workers,
            "worker_peak_rss": max((int(r["result"].get("worker_peak_rss", 0))
                                    for r in records), default=0),
            "workers_cpu_seconds": _workers_cpu(records)}


def _workers_cpu(records: Sequence[dict]) -> float:
    """CPU seconds of the worker processes that ran the units (start-up included): the
    largest cumulative figure each process reported. Units run by this process count
    their own CPU only."""
    per_pid: dict[int, float] = {}
    me = os.getpid()
    own = 0.0
    for r in records:
        res = r["result"]
        pid = res.get("worker_pid")
        if pid == me:
            own += float(res.get("cpu_seconds", 0))
        elif pid is not None:
            per_pid[pid] = max(per_pid.get(pid, 0.0), float(res.get("worker_cpu_seconds", 0)))
    return round(own + sum(per_pid.values()), 3)


def _refuse_existing(prefix: str, overwrite: bool) -> None:
    """Before any work: an existing output without ``overwrite`` is an error."""
    if not overwrite:
        for suffix in (".bin", ".idx"):
            if os.path.lexists(prefix + suffix):
                raise OutputExistsError(prefix + suffix)


def _dataset_inputs(ds: IndexedDataset) -> list[InputFile]:
    return [describe_input(ds.idx_path)] + [describe_input(os.fspath(p)) for p in ds.bin_paths]


def tokenize_units(files: Sequence[str], out_prefix: str, tokenizer, executor: Executor, *,
                   key: str = "text", append_eod: bool = False, errors: str = "strict",
                   overwrite: bool = True, unit_bytes: int = DEFAULT_UNIT_BYTES,
                   job_dir: str | None = None, threads: int | None = None,
                   keep_job: bool = False, progress: ProgressFactory | None = None) -> dict:
    """``tokenize`` of ``files`` (already expanded, no ``-``) into ``out_prefix`` through
    work units on ``executor``. Returns the summary ``tokenize_files`` returns plus the
    job's unit counts."""
    errors = _check_errors(errors)
    out_prefix = strip_suffix(out_prefix)
    refuse_overlap([out_prefix + ".bin", out_prefix + ".idx"], files)
    _refuse_existing(out_prefix, overwrite)
    started = time.monotonic()
    ref = TokenizerRef.of(tokenizer, threads=threads or default_threads(executor))
    dtype = np.dtype(tokenizer.dtype)
    if append_eod:
        tokenizer.eod_id  # noqa: B018 - fail before any work when there is none
    inputs, units = plan_files(files, unit_bytes)
    planned = time.monotonic()
    params = {"tokenizer": ref.fingerprint(), "key": key, "errors": errors,
              "append_eod": append_eod, "dtype": dtype.name}
    folder = job_dir or out_prefix + JOB_SUFFIX
    with JobStore(folder, "tokenize", params, inputs, units) as store, store.running():
        pending = store.pending()
        ctx = _Context(store.folder, tuple(inputs), ref, key=key, errors=errors,
                       append_eod=append_eod)
        records, info, merge_seconds = _run_and_merge(
            store, executor, partial(_tokenize_unit, ctx), pending, out_prefix, dtype,
            overwrite=overwrite, keep_job=keep_job, progress=progress, desc="tokenize")
    summary = _sum(records, "documents", "skipped_empty", "tokens", "input_bytes")
    warnings = []
    if summary["documents"] == 0:
        skipped = summary["skipped_empty"]
        warnings.append("no documents in the input"
                        + (f" ({skipped:,} empty skipped)" if skipped else "")
                        + f"; wrote an empty dataset {out_prefix}")
    return {"warnings": warnings, "output": out_prefix, **summary, "dtype": dtype.name,
            "eod": tokenizer.eod_id if append_eod else None, "tokenizer": tokenizer.name,
            "backend": tokenizer.backend, "seconds": round(time.monotonic() - started, 3),
            "plan_seconds": round(planned - started, 3),
            "merge_seconds": round(merge_seconds, 3), "inputs": len(files), **info}


def _plan_ds(ds: IndexedDataset, unit_bytes: int) -> list[Unit]:
    return plan_dataset(os.path.abspath(ds.prefix), ds.doc_idx, ds.pointers, ds.bin_bytes,
                        unit_bytes)


def retokenize_units(data, old, new, out_prefix, executor: Executor, *,
                     overwrite: bool = True, eod_id: int | None = None,
                     unit_bytes: int = DEFAULT_UNIT_BYTES,
                     job_dir: str | None = None, threads: int | None = None,
                     keep_job: bool = False, progress: ProgressFactory | None = None) -> dict:
    """``retokenize`` through document-range units (same bytes as one process)."""
    out_prefix = strip_suffix(out_prefix)
    started = time.monotonic()
    threads = threads or default_threads(executor)
    old_ref, new_ref = TokenizerRef.of(old, threads=threads), TokenizerRef.of(new,
                                                                              threads=threads)
    dtype = np.dtype(new.dtype)
    eod_id = _pl.resolve_eod_id(new, eod_id)
    with IndexedDataset(data) as ds:
        if os.path.abspath(ds.prefix) == os.path.abspath(out_prefix):
            raise UsageError(f"output {out_prefix} is also the input")
        refuse_overlap([out_prefix + ".bin", out_prefix + ".idx"],
                       [*map(str, ds.bin_paths), ds.idx_path])
        _refuse_existing(out_prefix, overwrite)
        _pl.check_first_eod(ds, old, new, eod_id)
        inputs = _dataset_inputs(ds)
        units = _plan_ds(ds, unit_bytes)
        prefix = os.path.abspath(ds.prefix)
    params = {"from_tokenizer": old_ref.fingerprint(), "tokenizer": new_ref.fingerprint(),
              "dtype": dtype.name, "eod_id": eod_id}
    folder = job_dir or out_prefix + JOB_SUFFIX
    with JobStore(folder, "retokenize", params, inputs, units) as store, store.running():
        pending = store.pending()
        ctx = _Context(store.folder, tuple(inputs), new_ref, old_ref, dataset=prefix,
                       extra={"eod_id": eod_id})
        records, info, _ = _run_and_merge(
            store, executor, partial(_retokenize_unit, ctx), pending, out_prefix, dtype,
            overwrite=overwrite, keep_job=keep_job, progress=progress, desc="retokenize")
    return {"output": out_prefix, **_sum(records, "documents", "tokens"), "dtype": dtype.name,
            "from_tokenizer": old.name, "tokenizer": new.name,
            "seconds": round(time.monotonic() - started, 3), **info}


def detokenize_units(data, tokenizer, output, executor: Executor, *, stream=None,
                     overwrite: bool = True, unit_bytes: int = DEFAULT_UNIT_BYTES,
                     job_dir: str | None = None, threads: int | None = None,
                     keep_job: bool = False, progress: ProgressFactory | None = None) -> dict:
    """``detokenize`` through document-range units; the JSON-lines parts are concatenated
    into ``output`` (a file, ``-`` or a FIFO). Writing to a stream without ``job_dir``
    uses a temporary job folder (no resume)."""
    started = time.monotonic()
    ref = TokenizerRef.of(tokenizer, threads=threads or default_threads(executor))
    with IndexedDataset(data) as ds:
        refuse_overlap([output], [*map(str, ds.bin_paths), ds.idx_path])
        inputs = _dataset_inputs(ds)
        units = _plan_ds(ds, unit_bytes)
        prefix = os.path.abspath(ds.prefix)
    params = {"tokenizer": ref.fingerprint()}
    out = AtomicOutput(output, overwrite=overwrite, stream=stream)
    temp = None
    try:
        if job_dir is None and out.final is None:
            temp = tempfile.TemporaryDirectory(prefix="pythia-data-detokenize-")
            job_dir = os.path.join(temp.name, "job")
        folder = job_dir or out.final + JOB_SUFFIX
        with JobStore(folder, "detokenize", params, inputs, units) as store, \
                store.running():
            pending = store.pending()
            todo = pending[0]
            ctx = _Context(store.folder, tuple(inputs), ref, dataset=prefix)
            records = run_units(store, executor, partial(_detokenize_unit, ctx),
                                progress=progress, desc="detokenize", pending=pending)
            nbytes = concat_parts(store, records, ".jsonl", out)
            info = _job_info(store, executor, len(todo), records)
            _merge_then_finish(store, keep_job, [out.final] if out.final else [], out.commit)
    except BaseException:
        out.abort()
        raise
    finally:
        if temp is not None:
            temp.cleanup()
    return {"output": os.fspath(output), **_sum(records, "documents"), "bytes": nbytes,
            "tokenizer": tokenizer.name, "seconds": round(time.monotonic() - started, 3),
            **info}
