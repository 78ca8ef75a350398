"""unshard: reassemble ``BASE.bin`` from its shards in one verified, atomic, resumable pass."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import (
    InputError,
    OutputError,
    OutputExistsError,
    PythiaDataError,
    ShardError,
    UsageError,
    VerificationError,
)
from pythia_data.format.header import expected_bin_bytes
from pythia_data.format.shardset import ShardSet, find_shards
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import Manifest, is_manifest_name, known_manifest
from pythia_data.io.atomic import fsync_dir, interrupts_deferred, output_lock
from pythia_data.io.copy import (
    Cancelled,
    SequentialHasher,
    copy_file_atomic,
    copy_hashed,
    fsync_fd,
    hash_region,
    same_bytes,
)

# =======================================================================================
# unshard: one verified, atomic, resumable pass
#
# Output protocol (all in the output folder):
#   BASE.bin.partial        the output being assembled, preallocated (sparse) to its final
#                           size; shard i is written at its own offset.
#   BASE.bin.partial.json   the resume state: the shard set's fingerprint (names, sizes) and,
#                           for every shard fully written and fsynced, its size, mtime and
#                           SHA256. Rewritten atomically (temp + rename + fsync) after the
#                           partial file has been fsynced, so a shard listed there is on disk.
#   BASE.bin                appears (rename of the partial) only once every shard is written
#                           and verified, the size matches BASE.idx, and BASE.idx is in place.
#   .BASE.bin.pythia-lock   the output's lock (pythia_data.io.atomic.OutputLock), held from
#                           before the partial file is opened until after the rename.
#
# Resume: a rerun finds the state, re-hashes the already written shards *in the partial file*
# (reading them, not rewriting them; this also catches a damaged partial) and copies only the
# shards not yet done. hashlib cannot serialize a SHA256 state, so the whole-file hash, when
# it is computed at all, is recomputed over the partial's completed prefix on resume.
#
# Whole-file hash: when every shard's own SHA256 is known and verified, the output is the
# concatenation of verified bytes, so its digest is implied (a second, strictly sequential
# SHA256 over the whole file would double the CPU and cap the speed at one core's SHA256
# throughput). It is therefore computed only when it adds information -- a whole-file digest is
# known but some shard's is not -- or when asked (``full_hash=True`` / ``--full-hash``).
# =======================================================================================

STATE_FORMAT = "pythia-data-unshard-state"
STATE_VERSION = 1


@dataclass
class ShardOutcome:
    """One shard's part in an unshard run. ``status``: ok, unverified, mismatch, resumed."""

    name: str
    size: int
    status: str
    digest: str | None = None
    expected: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "size": self.size,
            "status": self.status,
            "digest": self.digest,
            "expected": self.expected,
        }


@dataclass
class UnshardResult:
    """What :func:`unshard` did."""

    output: Path
    idx_output: Path | None
    total_bytes: int
    shards: list[ShardOutcome]
    whole_digest: str | None = None
    whole_expected: str | None = None
    resumed_shards: int = 0
    verified: bool = False
    idx_checked: bool = False
    idx_status: str = "unknown"
    manifests: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def whole_status(self) -> str:
        if self.whole_expected is None:
            return "unknown"
        if self.whole_digest is None:
            return "implied" if self.verified else "unverified"
        return "ok" if self.whole_digest == self.whole_expected else "mismatch"

    def summary(self) -> str:
        ok = sum(s.status in ("ok", "resumed") and s.expected is not None for s in self.shards)
        parts = [f"wrote {self.output} ({self.total_bytes} bytes) from {len(self.shards)} shards"]
        if self.resumed_shards:
            parts.append(f"resumed after {self.resumed_shards} completed shards")
        parts.append(f"{ok}/{len(self.shards)} shard SHA256s verified")
        if self.whole_digest is not None:  # computed (--full-hash): show it
            state = "" if self.whole_expected is None else f" ({self.whole_status})"
            parts.append(f"whole-file SHA256 {self.whole_digest}{state}")
        elif self.whole_expected is not None:
            parts.append(f"whole-file SHA256 {self.whole_status}")
        if self.idx_output is not None:
            parts.append(f"index {self.idx_output} (SHA256 {self.idx_status})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "idx_output": str(self.idx_output) if self.idx_output else None,
            "total_bytes": self.total_bytes,
            "resumed_shards": self.resumed_shards,
            "verified": self.verified,
            "idx_checked": self.idx_checked,
            "idx_status": self.idx_status,
            "manifests": list(self.manifests),
            "warnings": list(self.warnings),
            "whole_digest": self.whole_digest,
            "whole_expected": self.whole_expected,
            "whole_status": self.whole_status,
            "shards": [s.to_dict() for s in self.shards],
        }


#: Resume state is committed after this many bytes of completed shards (and when a run
#: fails), not after every shard: each commit is an fsync of the output (without
#: verification) plus a small atomic file write, and at Pythia's 5 GB shards a lost commit
#: costs at most a few shards' copy on resume.
COMMIT_BYTES = 2 << 30


class _Committer:
    """Makes completed shards durable and records them in the state file, off the copy path.

    Records are batched: the state is written once ``commit_bytes`` of completed shards are
    pending, and on :meth:`close` after a failure (so a rerun resumes). Without
    verification a shard enters the state file only after an fsync of the partial output
    that covers it, so whatever the state lists survives a crash; with verification the
    resumed run re-hashes what the state lists instead. The copy threads never wait.
    """

    def __init__(self, fd: int, out_name: str, state_path: Path, ss: ShardSet,
                 done: dict[int, dict], sync: bool = True,
                 commit_bytes: int = COMMIT_BYTES) -> None:
        import queue

        self._sync = sync
        self._fd, self._out_name, self._state_path, self._ss = fd, out_name, state_path, ss
        self._done = done
        self._commit_bytes = commit_bytes
        self._pending: list[tuple[int, dict]] = []
        self._pending_bytes = 0
        self._q: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self.commits = 0
        self._t = threading.Thread(target=self._run, name="unshard-commit", daemon=True)
        self._t.start()

    def _commit(self) -> None:
        if not self._pending or self._error is not None:
            return
        try:
            if self._sync:
                fsync_fd(self._fd, self._out_name)
            for i, rec in self._pending:
                self._done[i] = rec
            _save_state(self._state_path, self._ss, self._done)
            self.commits += 1
        except BaseException as exc:
            self._error = exc
        self._pending = []
        self._pending_bytes = 0

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if item == "flush":
                self._commit()
                continue
            i, rec = item
            self._pending.append((i, rec))
            self._pending_bytes += int(rec.get("size") or 0)
            if self._pending_bytes >= self._commit_bytes:
                self._commit()

    def submit(self, i: int, rec: dict) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((i, rec))

    def close(self, raise_error: bool = True, flush: bool = False) -> None:
        """Stop; with ``flush`` (a failed run), commit what is pending first."""
        if not self._closed:
            self._closed = True
            if flush:
                self._q.put("flush")
            self._q.put(None)
            self._t.join()
        if raise_error and self._error is not None:
            raise self._error


def _fingerprint(ss: ShardSet) -> list[dict]:
    return [{"name": p.name, "size": s} for p, s in zip(ss.paths, ss.sizes, strict=True)]


def _load_state(state_path: Path, ss: ShardSet) -> dict[int, dict] | None:
    """Completed shards by index from a valid state file for this shard set, else None."""
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if (
        not isinstance(state, dict)
        or state.get("format") != STATE_FORMAT
        or state.get("version") != STATE_VERSION
        or state.get("shards") != _fingerprint(ss)
        or not isinstance(state.get("done"), dict)
    ):
        return None
    out: dict[int, dict] = {}
    for key, rec in state["done"].items():
        try:
            i = int(key)
        except ValueError:
            return None
        if not (0 <= i < ss.count) or not isinstance(rec, dict):
            return None
        out[i] = rec
    return out


def _save_state(state_path: Path, ss: ShardSet, done: dict[int, dict]) -> None:
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "output": state_path.name[: -len(".partial.json")],
        "total_bytes": ss.total_bytes,
        "shards": _fingerprint(ss),
        "done": {str(i): done[i] for i in sorted(done)},
    }
    tmp = state_path.with_name(state_path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state_path)
    except OSError as exc:
        raise OutputError(f"cannot write {state_path}: {exc.strerror or exc}") from exc
    fsync_dir(state_path.parent)


def manifests_beside(ss: ShardSet, exclude=()) -> tuple[list[Manifest], list[str]]:
    """Manifests lying beside the shards that list at least one of their files.

    Candidates: ``*.sha256`` (what ``shard`` writes), ``*shard_hashes.txt`` (Pythia's
    style), ``SHA256SUMS``. Returns ``(manifests, warnings)``; a candidate that cannot be
    read or parsed is skipped with a warning.
    """
    names = set(ss.names) | {ss.name + ".bin", ss.idx_path.name}
    skip = {os.path.realpath(x) for x in exclude}
    found: list[Manifest] = []
    warnings: list[str] = []
    try:
        entries = sorted(os.listdir(ss.directory))
    except OSError:
        return found, warnings
    for n in entries:
        path = ss.directory / n
        if not is_manifest_name(n) or os.path.realpath(path) in skip or not path.is_file():
            continue
        try:
            m = Manifest.load(path)
        except PythiaDataError as exc:
            warnings.append(f"ignored {path}: {exc}")
            continue
        if any(x in m.entries for x in names):
            found.append(m)
    return found, warnings


# =======================================================================================
# unshard = plan -> copy -> commit
#
# plan_unshard()   every check that needs no output: the shard set against BASE.idx, the
#                  output's name, the digests to verify against (_Digests), the index's own
#                  SHA256. Writes nothing.
# _PartialFile     the output's lock (io.atomic.OutputLock, as every writer takes it), the
#                  preallocated BASE.bin.partial and its resume state; free space checked.
# _ShardCopier     copies (or, on resume, re-hashes) every shard at its offset, side by side
#                  in a thread pool; finished shards go to the _Committer.
# _commit()        the whole-file digest check, BASE.idx, the rename, the state file's removal.
# =======================================================================================


class _Digests:
    """The expected SHA256 of a file by name, from the first manifest that lists it
    (``--expected``, then manifests beside the shards, then the known Pythia ones);
    remembers which manifests it used."""

    def __init__(self, manifests: list[Manifest]) -> None:
        self.manifests = manifests
        self.used: list[str] = []

    def get(self, name: str) -> str | None:
        for m in self.manifests:
            e = m.get(name, "sha256")
            if e is not None:
                if m.source not in self.used:
                    self.used.append(m.source)
                return e.digest
        return None


@dataclass
class UnshardPlan:
    """What an unshard run will do, decided before anything is written
    (:func:`plan_unshard`)."""

    ss: ShardSet
    out_dir: Path
    final: Path
    verify: bool
    shard_expected: list[str | None]
    whole_expected: str | None
    compute_whole: bool
    idx_checked: bool
    idx_status: str
    digests: _Digests
    warnings: list[str]
    overwrite: bool
    jobs: int

    @property
    def out_name(self) -> str:
        return self.final.name

    @property
    def partial(self) -> Path:
        return self.final.with_name(self.out_name + ".partial")

    @property
    def state_path(self) -> Path:
        return self.final.with_name(self.out_name + ".partial.json")


def _check_sizes(ss: ShardSet, warnings: list[str]) -> bool:
    """Whether ``BASE.idx`` is there (then the shards must add up to what it expects)."""
    idx_src = ss.idx_path
    if not idx_src.is_file():
        warnings.append(
            f"no {idx_src.name} beside the shards: the total size of {ss.name}.bin could not "
            "be checked (and no index was copied)"
        )
        return False
    want = expected_bin_bytes(idx_src)
    if want != ss.total_bytes:
        raise ShardError(
            f"the {ss.count} shards of {ss.name} hold {ss.total_bytes} bytes but "
            f"{idx_src.name} expects {want}: a shard is missing, truncated or from another "
            "dataset"
        )
    return True


def _digest_sources(ss: ShardSet, expected, verify: bool, warnings: list[str]) -> _Digests:
    """The manifests to verify against, ``expected`` first (it must list something)."""
    covered = {*ss.names, ss.name + ".bin", ss.idx_path.name}
    manifests: list[Manifest] = []
    if expected is not None:
        manifest = expected if isinstance(expected, Manifest) else Manifest.load(expected)
        if not any(n in manifest.entries for n in covered):
            raise InputError(
                f"{manifest.source} lists none of the {ss.count} shards of {ss.name}, "
                f"{ss.name}.bin or {ss.idx_path.name}: it cannot verify anything "
                "(wrong manifest? pass --no-verify to copy unverified)"
            )
        manifests.append(manifest)
    if verify:
        own = [expected] if expected is not None and not isinstance(expected, Manifest) else []
        beside, why = manifests_beside(ss, exclude=own)
        manifests += beside
        warnings += why
        manifests.append(known_manifest())
    return _Digests(manifests)


def _check_index_digest(idx_src: Path, want: str | None) -> str:
    """The index is checked against its SHA256 before any data is written."""
    if want is None:
        return "unknown"
    try:
        got = hash_file(idx_src, "sha256")
    except OSError as exc:
        raise InputError(f"cannot read {idx_src}: {exc.strerror or exc}") from exc
    if got != want:
        raise VerificationError(
            f"{idx_src.name} does not match its SHA256 (expected {want}, got {got}); "
            "download it again and rerun"
        )
    return "ok"


def plan_unshard(shard, output_dir=None, *, expected=None, verify: bool = True,
                 full_hash: bool = False, jobs: int | None = None,
                 overwrite: bool = False) -> UnshardPlan:
    """Every check :func:`unshard` makes before writing: see its arguments. Raises what it
    raises before any output exists."""
    ss = find_shards(shard)
    out_dir = Path(os.fspath(output_dir)) if output_dir is not None else ss.directory
    final = out_dir / (ss.name + ".bin")
    warnings: list[str] = []
    idx_checked = _check_sizes(ss, warnings)
    if final.exists() and not overwrite:
        raise OutputExistsError(final)
    if final.resolve() in {p.resolve() for p in ss.paths}:
        raise UsageError(f"the output {final} would overwrite a shard")
    digests = _digest_sources(ss, expected, verify, warnings)
    shard_expected = [digests.get(p.name) if verify else None for p in ss.paths]
    whole_expected = digests.get(final.name) if verify else None
    idx_expected = digests.get(ss.idx_path.name) if verify and idx_checked else None
    compute_whole = verify and (full_hash or (
        whole_expected is not None and any(e is None for e in shard_expected)))
    if verify:
        unknown = sum(e is None for e in shard_expected)
        if unknown == ss.count and whole_expected is None:
            warnings.append(
                f"nothing could be verified: no SHA256 is known for {final.name} or any of "
                f"its {ss.count} shards (no --expected manifest, none beside the shards lists "
                "them, and they are not Pythia's published shards)"
            )
        elif unknown and whole_expected is None:
            warnings.append(f"{unknown} of {ss.count} shards have no known SHA256 and were "
                            "not verified")
    idx_status = _check_index_digest(ss.idx_path, idx_expected)
    njobs = 1 if compute_whole else (jobs or os.cpu_count() or 1)
    if njobs < 1:
        raise UsageError(f"jobs must be at least 1, got {njobs}")
    return UnshardPlan(ss, out_dir, final, verify, shard_expected, whole_expected,
                       compute_whole, idx_checked, idx_status, digests, warnings, overwrite,
                       njobs)


class _PartialFile:
    """``BASE.bin.partial``, preallocated to the final size, under the output's lock, with
    the shards an earlier run completed (``done``, from the resume state)."""

    def __init__(self, plan: UnshardPlan) -> None:
        self.plan = plan
        self.fd = -1
        self.created = False
        self.done: dict[int, dict] = {}
        try:
            plan.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {plan.out_dir}: {exc.strerror or exc}") from exc
        # the lock first (io.atomic's, as every output takes it): nothing below runs twice
        self._lock = output_lock(plan.final)
        try:
            if plan.final.exists() and not plan.overwrite:  # another run finished meanwhile
                raise OutputExistsError(plan.final)
            self._open()
            self._resume_state()
            self._reserve()
        except BaseException:
            # refused (no space, a finished output): leave nothing behind unless an earlier
            # run's completed shards are there to resume
            self.close(remove=not self.done)
            raise

    def _open(self) -> None:
        partial = self.plan.partial
        try:
            try:
                self.fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                self.created = True
            except FileExistsError:
                self.fd = os.open(partial, os.O_RDWR)
        except OSError as exc:
            raise OutputError(f"cannot write {partial}: {exc.strerror or exc}") from exc

    def _resume_state(self) -> None:
        """Shards an earlier run recorded, unless the shard was replaced since (same name
        and size, new mtime) or, with verification, has no digest on record."""
        plan, ss = self.plan, self.plan.ss
        if not self.created:
            loaded = _load_state(plan.state_path, ss)
            if loaded is not None and os.fstat(self.fd).st_size == ss.total_bytes:
                self.done = loaded
        if not self.done:
            with contextlib.suppress(FileNotFoundError):
                plan.state_path.unlink()
        for i in list(self.done):
            rec = self.done[i]
            if rec.get("size") != ss.sizes[i] or rec.get(
                    "mtime_ns") != ss.paths[i].stat().st_mtime_ns or (
                    plan.verify and not rec.get("sha256")):
                del self.done[i]

    def _reserve(self) -> None:
        """Check the free space, then preallocate (sparse) to the final size."""
        plan, ss = self.plan, self.plan.ss
        try:
            free = shutil.disk_usage(plan.out_dir).free
        except OSError:
            free = None
        need = ss.total_bytes - sum(ss.sizes[i] for i in self.done)
        if self.done:
            with contextlib.suppress(OSError):
                need = max(0, ss.total_bytes - os.fstat(self.fd).st_blocks * 512)
        if free is not None and need > free:
            raise OutputError(f"not enough space in {plan.out_dir}: {plan.out_name} needs "
                              f"{need} more bytes, {free} free")
        try:
            if not self.done:
                os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, ss.total_bytes)
        except OSError as exc:
            raise OutputError(f"cannot write {plan.partial}: {exc.strerror or exc}") from exc
        if not self.done:
            _save_state(plan.state_path, ss, self.done)

    def discard(self) -> None:
        """Nothing to resume from (e.g. the whole file failed its digest): remove both."""
        for q in (self.plan.partial, self.plan.state_path):
            with contextlib.suppress(OSError):
                q.unlink()

    def close(self, remove: bool = False) -> None:
        with interrupts_deferred():  # a Ctrl-C here waits for the lock file's removal
            if remove:
                self.discard()
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            if self._lock is not None:
                self._lock.release()
                self._lock = None


class _ShardCopier:
    """Copies every shard into the partial file at its offset (hashing it while writing),
    or, for a shard an earlier run completed, re-reads it there; side by side in
    ``plan.jobs`` threads. The first error stops the others."""

    def __init__(self, plan: UnshardPlan, part: _PartialFile, committer: _Committer,
                 progress, sync: bool) -> None:
        self.plan, self.part, self.committer = plan, part, committer
        self.progress, self.sync = progress, sync
        self.outcomes: list[ShardOutcome | None] = [None] * plan.ss.count
        self.whole = SequentialHasher() if plan.compute_whole else None
        self.resumed = 0
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def run(self) -> str | None:
        """Process every shard; the whole file's digest when it is computed."""
        count = self.plan.ss.count
        try:
            if self.plan.jobs == 1 or count == 1:
                for i in range(count):
                    self._process(i)
            else:
                self._in_pool(min(self.plan.jobs, count))
            return self.whole.hexdigest() if self.whole is not None else None
        finally:
            if self.whole is not None:
                self.whole.close()
                self.whole = None

    def _in_pool(self, workers: int) -> None:
        first_error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._process, i) for i in range(self.plan.ss.count)]
            for fut in futures:
                try:
                    fut.result()
                except Cancelled:
                    pass
                except BaseException as exc:  # stop the others, re-raise the first
                    self._cancel.set()
                    if first_error is None:
                        first_error = exc
        if first_error is not None:
            raise first_error

    def _finish(self, i: int, digest: str | None, status: str) -> None:
        ss, exp = self.plan.ss, self.plan.shard_expected[i]
        if digest is not None and exp is not None and digest != exp:
            raise VerificationError(
                f"shard {ss.paths[i].name} does not match its SHA256 "
                f"(expected {exp}, got {digest}); download it again and rerun"
            )
        if self.plan.verify and exp is None:
            status = "unknown"
        self.outcomes[i] = ShardOutcome(ss.paths[i].name, ss.sizes[i], status, digest, exp)

    def _resume(self, i: int, rec: dict) -> bool:
        """A shard written by an earlier run: re-read it from the partial file (nothing is
        written). False when the partial no longer holds it (then it is copied again)."""
        plan, ss = self.plan, self.plan.ss
        if not plan.verify and self.whole is None:
            self.outcomes[i] = ShardOutcome(ss.paths[i].name, ss.sizes[i], "resumed")
        else:
            digest = hash_region(self.part.fd, ss.offsets[i], ss.sizes[i], self.whole,
                                 self.progress)
            if plan.verify and digest != rec.get("sha256"):
                return False
            self._finish(i, digest if plan.verify else None, "resumed")
        with self._lock:
            self.resumed += 1
        return True

    def _process(self, i: int) -> None:
        if self._cancel.is_set():
            raise Cancelled
        plan, ss = self.plan, self.plan.ss
        rec = self.part.done.get(i)
        if rec is not None and self._resume(i, rec):
            return
        digest = copy_hashed(ss.paths[i], ss.sizes[i], self.part.fd, ss.offsets[i],
                             plan.out_name, hash_it=plan.verify, whole=self.whole,
                             progress=self.progress, cancel=self._cancel,
                             writeback=self.sync)
        self._finish(i, digest, "ok" if plan.verify else "unverified")
        self.committer.submit(i, {"size": ss.sizes[i],
                                  "mtime_ns": ss.paths[i].stat().st_mtime_ns,
                                  "sha256": digest})


def _commit(plan: UnshardPlan, part: _PartialFile, whole_digest: str | None) -> Path | None:
    """Still under the lock: the whole file's digest, the index beside it, then the final
    name. Returns the index copied (or left in place), if any."""
    if (whole_digest is not None and plan.whole_expected is not None
            and whole_digest != plan.whole_expected):
        part.discard()  # the bytes are wrong: nothing to resume
        raise VerificationError(
            f"{plan.out_name} does not match its SHA256 (expected {plan.whole_expected}, got "
            f"{whole_digest})" + ("" if all(plan.shard_expected) else
                                  "; some shards have no known SHA256 to tell which")
        )
    idx_src, idx_out = plan.ss.idx_path, None
    if idx_src.is_file():
        idx_out = plan.out_dir / idx_src.name
        if idx_out.resolve() != idx_src.resolve() and not same_bytes(idx_src, idx_out):
            copy_file_atomic(idx_src, idx_out)
    try:
        os.replace(plan.partial, plan.final)
    except OSError as exc:
        raise OutputError(
            f"cannot rename {plan.partial} to {plan.final}: {exc.strerror or exc}") from exc
    with contextlib.suppress(FileNotFoundError):
        plan.state_path.unlink()
    fsync_dir(plan.out_dir)
    return idx_out


def unshard(
    shard: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    *,
    expected=None,
    verify: bool = True,
    full_hash: bool = False,
    jobs: int | None = None,
    overwrite: bool = False,
    progress=None,
    sync: bool = True,
    commit_bytes: int | None = None,
) -> UnshardResult:
    """Reassemble ``BASE.bin`` from its shards in one pass; see the module notes above.

    ``shard``: any shard's path, the prefix, or the folder holding them. ``output_dir``:
    where ``BASE.bin`` goes (default: beside the shards). ``expected``: a manifest (path or
    :class:`pythia_data.integrity.manifest.Manifest`) with per-shard, whole-file and/or
    ``.idx`` SHA256s; it must list at least one of them (else :class:`InputError`).
    Manifests lying beside the shards (``*.sha256``, ``*shard_hashes.txt``, ``SHA256SUMS``)
    and the known Pythia manifests are consulted too, in that order. When nothing at all
    can be verified (no digest for any shard nor the whole file, or no ``BASE.idx``), the
    run goes on and says so in ``result.warnings``. ``verify=False`` copies without
    hashing. ``jobs``: shards copied side by side (default: all cores; 1 when the
    whole-file hash is computed). ``progress(n)`` is called with bytes processed.
    ``sync=False`` skips the fsyncs of the data (as ``cat`` and ``cp`` do): an interrupted
    or killed run is still safe to rerun, but after a power loss the output may hold bytes
    that never reached the disk. ``commit_bytes``: resume state is recorded every this
    many bytes of completed shards (default :data:`COMMIT_BYTES`) and when a run fails.

    The output is locked while written (the lock of :mod:`pythia_data.io.atomic`): a
    second run into the same folder fails at once with "another pythia-data is writing
    ..." (:class:`OutputError`).

    Raises :class:`VerificationError` (naming the shard or ``.idx``) on a mismatch, leaving
    no ``BASE.bin``; :class:`ShardError` before writing anything if the shard set or its
    size against ``BASE.idx`` is wrong; :class:`OutputError` if the output cannot be
    written (rerun to resume).
    """
    plan = plan_unshard(shard, output_dir, expected=expected, verify=verify,
                        full_hash=full_hash, jobs=jobs, overwrite=overwrite)
    part = _PartialFile(plan)
    committer: _Committer | None = None
    failed = True
    try:
        # With verification, a resumed run re-hashes every recorded shard from the partial
        # file, so the partial need not be fsynced per commit (only before the final
        # rename); without it, the partial is fsynced before shards are recorded.
        committer = _Committer(part.fd, plan.out_name, plan.state_path, plan.ss, part.done,
                               sync=sync and not verify,
                               commit_bytes=commit_bytes or COMMIT_BYTES)
        copier = _ShardCopier(plan, part, committer, progress, sync)
        whole_digest = copier.run()
        committer.close()
        if sync:
            fsync_fd(part.fd, plan.out_name)
        try:
            idx_out = _commit(plan, part, whole_digest)
        except VerificationError:
            failed = False  # discarded: nothing to resume
            raise
        failed = False
    finally:
        if committer is not None:
            committer.close(raise_error=False, flush=failed)
        part.close()

    return UnshardResult(
        output=plan.final,
        idx_output=idx_out,
        total_bytes=plan.ss.total_bytes,
        shards=[o for o in copier.outcomes if o is not None],
        whole_digest=whole_digest,
        whole_expected=plan.whole_expected,
        resumed_shards=copier.resumed,
        verified=verify and all(e is not None for e in plan.shard_expected),
        idx_checked=plan.idx_checked,
        idx_status=plan.idx_status,
        manifests=plan.digests.used,
        warnings=plan.warnings,
    )
