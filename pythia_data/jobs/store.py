"""The job folder: the stored plan, one part and one completion record per unit, a lock.

Layout of ``FOLDER`` (by default the output's name plus ``.job``)::

    plan.json            the job: kind, options that change the output, inputs
                         (absolute path, size, mtime_ns) and the units (plan.py)
    lock                 flock'ed by the command driving the job (one driver at a time)
    parts/u00042.*       unit 42's output (a .bin/.idx pair, a JSON-lines part, ...)
    done/u00042.json     unit 42's completion record: unit id, its inputs with size and
                         mtime_ns, each output's size and xxh3-128, and the unit's counts

Every file here is written with the package's atomic protocol, and a unit writes its
record only after its part is committed, so a record always describes a whole part. A
rerun (after a crash, Ctrl-C or ``kill -9`` of the driver or of any worker) reads
``plan.json`` and skips units whose record matches; the rest run again. A rerun whose
inputs changed (size or mtime), whose options differ or whose unit count differs is
refused with one line naming what changed: mixing parts of two plans would write a
dataset no single run writes. The merge checks each part against its record's xxh3.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence

from pythia_data.errors import InputError, OutputError, UsageError
from pythia_data.integrity.hashing import hash_file
from pythia_data.io.atomic import (
    AtomicOutput,
    atomic_write_text,
    ensure_folder,
    interrupts_deferred,
    lock_file,
)
from pythia_data.jobs.plan import InputFile, Unit, describe_input

__all__ = ["PLAN_VERSION", "JobStore", "record_unit", "part_path"]

PLAN_VERSION = 1


def part_path(folder: str, unit: Unit, suffix: str) -> str:
    """Where ``unit`` writes its part with ``suffix`` (``.bin``, ``.idx``, ``.jsonl``)."""
    return os.path.join(folder, "parts", unit.name + suffix)


def _record_path(folder: str, unit: Unit) -> str:
    return os.path.join(folder, "done", unit.name + ".json")


def record_unit(folder: str, unit: Unit, inputs: Sequence[InputFile], outputs: Sequence[str],
                result: dict, digests: dict[str, tuple[int, str]] | None = None) -> dict:
    """Write ``unit``'s completion record (after its outputs are committed). Runs in the
    worker. ``outputs`` are the part files (hashed here); ``result`` its counts.
    ``digests``: ``{path: (size, xxh3)}`` of outputs hashed as they were written (their
    writer's); those are not read back unless the file's size differs."""
    known = digests or {}

    def meta(path: str) -> dict:
        size = os.path.getsize(path)
        have = known.get(path)
        if have is not None and have[0] == size:
            return {"size": size, "xxh3": have[1]}
        return {"size": size, "xxh3": hash_file(path, "xxh3")}

    record = {
        "unit": unit.to_dict(),
        "inputs": [i.to_dict() for i in inputs],
        "outputs": {os.path.basename(p): meta(p) for p in outputs},
        "result": result,
    }
    # not fsynced, like the parts: after a power cut a torn part fails its xxh3 at the merge
    out = AtomicOutput(_record_path(folder, unit))
    try:
        out.write((json.dumps(record, indent=1) + "\n").encode("utf-8"))
    except BaseException:
        out.abort()
        raise
    out.commit(sync=False)
    return record


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged record is a unit to redo
    return value if isinstance(value, dict) else None


class JobStore:
    """Open (or create) the job folder for one job; hold its lock until :meth:`close`.

    ``kind`` and ``params`` (JSON values) identify what the job computes; ``inputs`` and
    ``units`` are this run's plan. An existing plan must agree on all of them or
    :class:`UsageError` says what differs (and that removing the folder starts over)."""

    def __init__(self, folder: str | os.PathLike, kind: str, params: dict,
                 inputs: Sequence[InputFile], units: Sequence[Unit]):
        self.folder = os.path.abspath(os.fspath(folder))
        self.kind = kind
        self.params = json.loads(json.dumps(params))  # as stored (tuples -> lists)
        self.inputs = list(inputs)
        self.units = list(units)
        self.resumed = False
        self._lock_fd: int | None = None
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise OutputError(f"job folder {self.folder} is a file")
        ensure_folder(os.path.join(self.folder, "parts"), "job folder")
        ensure_folder(os.path.join(self.folder, "done"), "job folder")
        self._lock()
        try:
            self._load_or_write_plan()
        except BaseException:
            self.close()
            raise

    # -- the plan
    def _lock(self) -> None:
        path = os.path.join(self.folder, "lock")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            lock_file(fd, self.folder)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _plan_dict(self) -> dict:
        return {"version": PLAN_VERSION, "kind": self.kind, "params": self.params,
                "inputs": [i.to_dict() for i in self.inputs],
                "units": [u.to_dict() for u in self.units]}

    def _load_or_write_plan(self) -> None:
        path = os.path.join(self.folder, "plan.json")
        old = _read_json(path)
        if old is None:
            if os.path.exists(path):
                raise InputError(f"{path} is damaged; remove {self.folder} to start over")
            atomic_write_text(path, json.dumps(self._plan_dict(), indent=1) + "\n")
            return
        again = f"; remove {self.folder} to start over"
        if old.get("version") != PLAN_VERSION or old.get("kind") != self.kind:
            raise UsageError(f"{self.folder} holds another job ({old.get('kind')!r}){again}")
        if old.get("params") != self.params:
            diff = sorted(k for k in set(old["params"]) | set(self.params)
                          if old["params"].get(k) != self.params.get(k))
            raise UsageError(f"{self.folder} was planned with other options "
                             f"({', '.join(diff)} differ){again}")
        old_inputs = [InputFile(**i) for i in old.get("inputs", [])]
        if [i.path for i in old_inputs] != [i.path for i in self.inputs]:
            raise UsageError(f"{self.folder} was planned over other inputs "
                             f"({len(old_inputs)} files){again}")
        for a, b in zip(old_inputs, self.inputs):
            if a != b:
                raise UsageError(f"{a.path} changed since the job was planned (size or "
                                 f"modification time){again}")
        old_units = [Unit.from_dict(u) for u in old.get("units", [])]
        if len(old_units) != len(self.units):
            raise UsageError(f"{self.folder} was planned as {len(old_units)} units, this run "
                             f"plans {len(self.units)} (another --unit-size?){again}")
        if old_units != self.units:
            raise UsageError(f"{self.folder} was planned with other unit boundaries{again}")
        self.resumed = True

    # -- units
    def inputs_of(self, unit: Unit) -> list[InputFile]:
        """The plan's inputs that ``unit`` reads (its file, or a dataset's .bin and .idx)."""
        if unit.kind == "documents":
            return list(self.inputs)  # one dataset per job: its .idx and .bin file(s)
        return [i for i in self.inputs if i.path == unit.path]

    def record(self, unit: Unit) -> dict | None:
        """``unit``'s completion record if it is complete and still valid, else None."""
        rec = _read_json(_record_path(self.folder, unit))
        if rec is None or rec.get("unit") != unit.to_dict():
            return None
        if rec.get("inputs") != [i.to_dict() for i in self.inputs_of(unit)]:
            return None
        for name, meta in (rec.get("outputs") or {}).items():
            try:
                if os.path.getsize(os.path.join(self.folder, "parts", name)) != meta["size"]:
                    return None
            except (OSError, KeyError, TypeError):
                return None
        return rec

    def pending(self) -> tuple[list[Unit], dict[int, dict]]:
        """``(units still to run, {unit id: record} of those done)``."""
        todo, done = [], {}
        for unit in self.units:
            rec = self.record(unit)
            if rec is None:
                todo.append(unit)
            else:
                done[unit.id] = rec
        return todo, done

    def check_part(self, unit: Unit, record: dict, suffix: str, *, verify: bool = True) -> str:
        """The path of ``unit``'s part ``suffix`` after checking its xxh3 against the record
        (InputError if the part was changed since the unit finished); ``verify=False``
        checks only that the record lists it with the part's size."""
        path = part_path(self.folder, unit, suffix)
        meta = record["outputs"].get(os.path.basename(path))
        if meta is None:
            raise InputError(f"{path}: not in unit {unit.id}'s completion record")
        if not verify:
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
            if size != meta.get("size"):
                raise InputError(f"{path} changed after unit {unit.id} finished ({size} "
                                 f"bytes, recorded {meta.get('size')}); remove it and rerun")
            return path
        digest = hash_file(path, "xxh3")
        if digest != meta["xxh3"]:
            raise InputError(f"{path} changed after unit {unit.id} finished (xxh3 {digest}, "
                             f"recorded {meta['xxh3']}); remove it and rerun")
        return path

    def check_inputs_unchanged(self) -> None:
        """Raise if any input changed while the job ran (checked again before the merge)."""
        for old in self.inputs:
            now = describe_input(old.path)
            if now != old:
                raise InputError(f"{old.path} changed while the job ran (size or "
                                 "modification time); rerun to redo the units that read it")

    # -- ending
    @contextlib.contextmanager
    def running(self):
        """Wrap the job's run: bad input or a bad option (InputError, UsageError) is
        deterministic, and a rerun with other inputs or options is refused anyway, so
        the folder is removed; anything else (Ctrl-C, kill, a full disk) keeps it for the
        rerun to resume - when some unit finished: an interruption before the first
        completion record leaves nothing behind."""
        try:
            yield self
        except (InputError, UsageError):
            self.remove()
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                if not os.listdir(os.path.join(self.folder, "done")):
                    self.remove()
            raise

    def remove(self) -> None:
        """Delete the job folder (after a successful merge); a Ctrl-C waits for it."""
        self.close()
        with interrupts_deferred():
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
