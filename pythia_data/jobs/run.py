"""Driving a job: run the units a store still lacks on an executor, then merge the parts
in unit order into the output a single process writes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Sequence

import numpy as np

from pythia_data.dataset import DatasetBuilder
from pythia_data.errors import InputError, OutputError
from pythia_data.format.header import read_index_header
from pythia_data.io.atomic import AtomicOutput, interrupts_deferred
from pythia_data.jobs.executors import Executor
from pythia_data.jobs.plan import Unit
from pythia_data.jobs.store import JobStore
from pythia_data.progress import ProgressFactory, task

__all__ = ["PartMerger", "concat_parts", "merge_dataset_parts", "run_units"]

#: Bytes per read when parts are concatenated.
_CHUNK = 8 << 20


def run_units(store: JobStore, executor: Executor, fn: Callable[[Unit], dict], *,
              progress: ProgressFactory | None = None, desc: str = "units",
              on_unit: Callable[[], None] | None = None,
              pending: tuple[list[Unit], dict[int, dict]] | None = None) -> list[dict]:
    """Run every unit of ``store`` without a valid completion record through ``executor``
    (``fn(unit)`` writes the part and the record) and return all the records in unit
    order. Progress counts the units' input bytes, those done earlier included.
    ``on_unit()`` is called in this thread after each unit finishes (a
    :class:`PartMerger`'s ``advance``). ``pending``: ``store.pending()`` as the caller
    already read it with the store held (each call reads every completion record: ~13,000
    of them for a resumed Pile-sized job)."""
    todo, done = store.pending() if pending is None else pending
    total = sum(u.weight for u in store.units)
    with task(progress, desc, total, "B") as update:
        if update is not None and done:
            update(sum(u.weight for u in store.units if u.id in done))
        if on_unit is not None:
            shown = update

            def update(n: int) -> None:
                if shown is not None:
                    shown(n)
                on_unit()

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
                        overwrite: bool = True, merger: PartMerger | None = None) -> None:
    """Concatenate the units' ``.bin``/``.idx`` parts in unit order into ``prefix`` (the
    same bytes one builder fed every document writes), checking each part's xxh3, and
    commit it. With ``merger``, the parts it appended while the job ran are kept (their
    records must not have changed since) and only the rest are appended."""
    if merger is None:
        merger = PartMerger(store, prefix, dtype, overwrite=overwrite)
    merger.finish(records)


class PartMerger:
    """Appends the units' dataset parts to the output in unit order *while the job runs*:
    :meth:`advance` (called after each unit finishes) wakes a merge thread that appends
    every part whose units before it are all appended, and a flush thread writes the
    appended data to disk (``fdatasync``) meanwhile. After the last unit, :meth:`finish`
    has one part or so left to append, and the final fsync little left to write: at 1 GB
    of input the merge after the units took ~1.5 s, most of it copying 750 MB of parts and
    waiting for the disk. The appends run on their own thread, not in :meth:`advance`'s
    caller: a job whose units run in the calling thread (one local worker) went on to its
    next unit while the copy ran, instead of after it (~0.5 s of 15 at 1 GB).

    The output is the same :class:`DatasetBuilder` partial files as a merge at the end:
    nothing is visible under the final names before :meth:`finish` commits, and
    :meth:`abort` (or any exception in :meth:`finish`) removes them. An error of the merge
    thread (a part changed since its unit finished) is raised by the next :meth:`advance`
    or by :meth:`finish`."""

    def __init__(self, store: JobStore, prefix: str, dtype, *, overwrite: bool = True,
                 fresh: Collection[int] = ()):
        self.store, self.prefix, self.dtype, self.overwrite = store, prefix, dtype, overwrite
        # units this run does: their parts written by this process are not hashed again
        self._fresh = frozenset(fresh)
        self._builder: DatasetBuilder | None = None
        self._merged: list[dict] = []  # the records of the parts appended, in unit order
        self._flush: _Flusher | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._asked = 0  # advance() calls so far
        self._served = 0  # of those, the calls the merge thread has caught up with
        self._stopping = False
        self._error: BaseException | None = None

    def _append(self, unit: Unit, rec: dict) -> None:
        if self._builder is None:
            self._builder = DatasetBuilder(self.prefix, self.dtype, overwrite=self.overwrite)
        # a part this process wrote in this run (the driver running units itself, or its
        # worker threads) was hashed as it was written, committed, and is in this machine's
        # page cache: reading it back to hash it again checks nothing (it guards parts of
        # an earlier run, which a crash may have torn, and parts other processes or
        # machines wrote)
        verify = not (unit.id in self._fresh
                      and rec.get("result", {}).get("worker_pid") == os.getpid())
        bin_path = self.store.check_part(unit, rec, ".bin", verify=verify)
        idx = self.store.check_part(unit, rec, ".idx", verify=verify)
        self._builder.add_index(_Part(bin_path, idx, self._builder.dtype))
        self._merged.append(rec)

    def _append_finished(self) -> None:
        """Append the parts of the finished units that follow the last one appended (in
        the merge thread), then ask for a flush."""
        units = self.store.units
        before = len(self._merged)
        while len(self._merged) < len(units) and not self._stopping:
            rec = self.store.record(units[len(self._merged)])
            if rec is None:
                break
            self._append(units[len(self._merged)], rec)
        if len(self._merged) > before and self._builder is not None:
            if self._flush is None:
                fd = self._builder.data_fd()
                if fd is not None:
                    self._flush = _Flusher(fd)
            if self._flush is not None:
                self._flush.request()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._served == self._asked and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                asked = self._asked
            try:
                self._append_finished()
            except BaseException as exc:  # noqa: BLE001 - raised by advance() or finish()
                with self._cond:
                    self._error = exc
                    self._served = self._asked
                    self._cond.notify_all()
                return
            with self._cond:
                self._served = asked
                self._cond.notify_all()

    def advance(self) -> None:
        """A unit finished: have the merge thread append the parts now in order."""
        self._raise_error()
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pythia-data-merge",
                                                daemon=True)
                self._thread.start()
            self._asked += 1
            self._cond.notify_all()

    def wait(self) -> None:
        """Wait until the merge thread has appended what the :meth:`advance` calls so far
        found finished (or failed: its error is raised)."""
        with self._cond:
            target = self._asked
            while self._served < target and self._thread is not None \
                    and self._thread.is_alive():
                self._cond.wait(0.1)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop_thread(self) -> None:
        """Stop the merge thread (after the part it is appending, if any)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._stopping = False

    def finish(self, records: Sequence[dict]) -> None:
        """Append the remaining parts and commit; ``records`` are the job's final records
        (a part appended early whose unit was redone since must have the same bytes)."""
        try:
            self._stop_thread()  # the parts it has not appended yet are appended here
            self._raise_error()
            for k, (unit, rec) in enumerate(zip(self.store.units, records)):
                if k < len(self._merged):
                    if rec.get("outputs") != self._merged[k].get("outputs"):
                        raise OutputError(f"unit {unit.id}'s part changed after it was merged "
                                          f"in {self.store.folder}; rerun")
                    continue
                self._append(unit, rec)
            if self._builder is None:  # a job of no units: an empty dataset
                self._builder = DatasetBuilder(self.prefix, self.dtype,
                                               overwrite=self.overwrite)
            self._stop_flush()
            builder, self._builder = self._builder, None
            builder.finalize()
        except BaseException:
            self.abort()
            raise

    def _stop_flush(self) -> None:
        if self._flush is not None:
            self._flush.stop()
            self._flush = None

    def abort(self) -> None:
        """Drop the partial output (nothing once :meth:`finish` has committed); a Ctrl-C
        meanwhile waits for the merge thread's part and the removal."""
        with interrupts_deferred():
            self._stop_thread()
            self._stop_flush()
            if self._builder is not None:
                builder, self._builder = self._builder, None
                builder.abort()


class _Flusher:
    r"""A daemon thread that ``fdatasync``\s its own descriptor when asked (requests made
    while it syncs coalesce into one more). It never touches the writer's buffers; the
    writer's final fsync still makes the file durable, with little left to write."""

    def __init__(self, fd: int):
        self._fd = fd
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="pythia-data-flush",
                                        daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    os.fdatasync(self._fd)
                except OSError:  # the final fsync reports real errors
                    return
        finally:
            os.close(self._fd)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


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
