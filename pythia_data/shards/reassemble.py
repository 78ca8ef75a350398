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
    PythiaDataError,
    ShardError,
    UsageError,
    VerificationError,
)
from pythia_data.format.header import expected_bin_bytes
from pythia_data.format.shardset import ShardSet, find_shards
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import Manifest, is_manifest_name, known_manifest
from pythia_data.io.atomic import fsync_dir, lock_file
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
        if self.whole_expected is not None:
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
    except (OSError, ValueError):
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

    The partial output is locked while written: a second run into the same folder fails at
    once with "another pythia-data is writing ..." (:class:`OutputError`).

    Raises :class:`VerificationError` (naming the shard or ``.idx``) on a mismatch, leaving
    no ``BASE.bin``; :class:`ShardError` before writing anything if the shard set or its
    size against ``BASE.idx`` is wrong; :class:`OutputError` if the output cannot be
    written (rerun to resume).
    """
    ss = find_shards(shard)
    out_dir = Path(os.fspath(output_dir)) if output_dir is not None else ss.directory
    out_name = ss.name + ".bin"
    final = out_dir / out_name
    partial = out_dir / (out_name + ".partial")
    state_path = out_dir / (out_name + ".partial.json")
    total = ss.total_bytes
    warnings: list[str] = []

    # -- checks before writing anything
    idx_src = ss.idx_path
    idx_checked = False
    if idx_src.is_file():
        want = expected_bin_bytes(idx_src)
        if want != total:
            raise ShardError(
                f"the {ss.count} shards of {ss.name} hold {total} bytes but {idx_src.name} "
                f"expects {want}: a shard is missing, truncated or from another dataset"
            )
        idx_checked = True
    else:
        warnings.append(
            f"no {idx_src.name} beside the shards: the total size of {out_name} could not "
            "be checked (and no index was copied)"
        )
    if final.exists() and not overwrite:
        raise OutputError(f"{final} already exists (remove it or pass --force)")
    if final.resolve() in {p.resolve() for p in ss.paths}:
        raise UsageError(f"the output {final} would overwrite a shard")

    covered = {*ss.names, out_name, idx_src.name}
    manifest = None
    if expected is not None:
        manifest = expected if isinstance(expected, Manifest) else Manifest.load(expected)
        if not any(n in manifest.entries for n in covered):
            raise InputError(
                f"{manifest.source} lists none of the {ss.count} shards of {ss.name}, "
                f"{out_name} or {idx_src.name}: it cannot verify anything "
                "(wrong manifest? pass --no-verify to copy unverified)"
            )
    lookups: list[Manifest] = [manifest] if manifest is not None else []
    if verify:
        own = [expected] if expected is not None and not isinstance(expected, Manifest) else []
        beside, why = manifests_beside(ss, exclude=own)
        lookups += beside
        warnings += why
        lookups.append(known_manifest())
    used: list[str] = []

    def lookup(name: str) -> str | None:
        for m in lookups:
            e = m.get(name, "sha256")
            if e is not None:
                if m.source not in used:
                    used.append(m.source)
                return e.digest
        return None

    shard_expected = [lookup(p.name) if verify else None for p in ss.paths]
    whole_expected = lookup(out_name) if verify else None
    idx_expected = lookup(idx_src.name) if verify and idx_checked else None
    compute_whole = verify and (full_hash or (
        whole_expected is not None and any(e is None for e in shard_expected)))
    if verify:
        unknown = sum(e is None for e in shard_expected)
        if unknown == ss.count and whole_expected is None:
            warnings.append(
                f"nothing could be verified: no SHA256 is known for {out_name} or any of its "
                f"{ss.count} shards (no --expected manifest, none beside the shards lists "
                "them, and they are not Pythia's published shards)"
            )
        elif unknown and whole_expected is None:
            warnings.append(f"{unknown} of {ss.count} shards have no known SHA256 and were "
                            "not verified")

    # the index is checked against its SHA256 before any data is written
    idx_status = "unknown"
    if idx_expected is not None:
        try:
            got = hash_file(idx_src, "sha256")
        except OSError as exc:
            raise InputError(f"cannot read {idx_src}: {exc.strerror or exc}") from exc
        if got != idx_expected:
            raise VerificationError(
                f"{idx_src.name} does not match its SHA256 (expected {idx_expected}, got "
                f"{got}); download it again and rerun"
            )
        idx_status = "ok"

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc

    # -- take the partial file and its lock first: nothing below runs twice at once
    created = False
    try:
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            created = True
        except FileExistsError:
            fd = os.open(partial, os.O_RDWR)
    except OSError as exc:
        raise OutputError(f"cannot write {partial}: {exc.strerror or exc}") from exc
    try:
        lock_file(fd, str(final))
        # the file we locked must still be the partial (not one another run just renamed)
        st = os.fstat(fd)
        try:
            cur = os.stat(partial)
        except FileNotFoundError:
            cur = None
        if cur is None or (cur.st_dev, cur.st_ino) != (st.st_dev, st.st_ino):
            raise OutputError(f"another pythia-data is writing {final}")
    except BaseException:
        os.close(fd)
        raise
    if final.exists() and not overwrite:  # another run finished while we waited
        if created:
            with contextlib.suppress(OSError):
                partial.unlink()
        os.close(fd)
        raise OutputError(f"{final} already exists (remove it or pass --force)")

    outcomes: list[ShardOutcome | None] = [None] * ss.count
    whole: SequentialHasher | None = None
    committer: _Committer | None = None
    offsets = ss.offsets
    resumed = 0
    whole_digest = None
    failed = True
    try:
        done: dict[int, dict] = {}
        if not created:
            loaded = _load_state(state_path, ss)
            if loaded is not None and os.fstat(fd).st_size == total:
                done = loaded
        if not done:
            with contextlib.suppress(FileNotFoundError):
                state_path.unlink()

        # A shard replaced since it was copied (same name and size, new mtime) is copied again.
        for i in list(done):
            st = ss.paths[i].stat()
            rec = done[i]
            if rec.get("size") != ss.sizes[i] or rec.get("mtime_ns") != st.st_mtime_ns or (
                verify and not rec.get("sha256")
            ):
                del done[i]

        try:
            free = shutil.disk_usage(out_dir).free
        except OSError:
            free = None
        need = total - sum(ss.sizes[i] for i in done)
        if done:
            with contextlib.suppress(OSError):
                need = max(0, total - os.fstat(fd).st_blocks * 512)
        if free is not None and need > free:
            if not done:  # nothing to resume: leave no empty partial file behind
                with contextlib.suppress(OSError):
                    partial.unlink()
                with contextlib.suppress(OSError):
                    state_path.unlink()
            raise OutputError(
                f"not enough space in {out_dir}: {out_name} needs {need} more bytes, {free} free"
            )

        try:
            if not done:
                os.ftruncate(fd, 0)
            os.ftruncate(fd, total)
        except OSError as exc:
            if not done:
                with contextlib.suppress(OSError):
                    partial.unlink()
            raise OutputError(f"cannot write {partial}: {exc.strerror or exc}") from exc
        if not done:
            _save_state(state_path, ss, done)
        if compute_whole:
            whole = SequentialHasher()
        # With verification, a resumed run re-hashes every recorded shard from the partial
        # file, so the partial need not be fsynced per commit (only before the final
        # rename); without it, the partial is fsynced before shards are recorded.
        committer = _Committer(fd, out_name, state_path, ss, done, sync=sync and not verify,
                               commit_bytes=commit_bytes or COMMIT_BYTES)
        lock = threading.Lock()
        cancel = threading.Event()

        def finish(i: int, digest: str | None, status: str) -> None:
            exp = shard_expected[i]
            if digest is not None and exp is not None and digest != exp:
                raise VerificationError(
                    f"shard {ss.paths[i].name} does not match its SHA256 "
                    f"(expected {exp}, got {digest}); download it again and rerun"
                )
            if verify and exp is None:
                status = "unknown"
            outcomes[i] = ShardOutcome(ss.paths[i].name, ss.sizes[i], status, digest, exp)

        def process(i: int) -> None:
            nonlocal resumed
            if cancel.is_set():
                raise Cancelled
            rec = done.get(i)
            if rec is not None:
                # written by an earlier run: re-read it from the partial, write nothing
                if not verify and whole is None:
                    outcomes[i] = ShardOutcome(ss.paths[i].name, ss.sizes[i], "resumed")
                    with lock:
                        resumed += 1
                    return
                digest = hash_region(fd, offsets[i], ss.sizes[i], whole, progress)
                if not verify or digest == rec.get("sha256"):
                    finish(i, digest if verify else None, "resumed")
                    with lock:
                        resumed += 1
                    return
                # the partial no longer holds what was written there: copy the shard again
            digest = copy_hashed(ss.paths[i], ss.sizes[i], fd, offsets[i], out_name,
                                 hash_it=verify, whole=whole, progress=progress, cancel=cancel,
                                 writeback=sync)
            finish(i, digest, "ok" if verify else "unverified")
            rec = {"size": ss.sizes[i], "mtime_ns": ss.paths[i].stat().st_mtime_ns,
                   "sha256": digest}
            committer.submit(i, rec)

        njobs = 1 if whole is not None else (jobs or os.cpu_count() or 1)
        if njobs < 1:
            raise UsageError(f"jobs must be at least 1, got {njobs}")
        if njobs == 1 or ss.count == 1:
            for i in range(ss.count):
                process(i)
        else:
            first_error: BaseException | None = None
            with ThreadPoolExecutor(max_workers=min(njobs, ss.count)) as pool:
                futures = [pool.submit(process, i) for i in range(ss.count)]
                for fut in futures:
                    try:
                        fut.result()
                    except Cancelled:
                        pass
                    except BaseException as exc:  # stop the others, re-raise the first
                        cancel.set()
                        if first_error is None:
                            first_error = exc
            if first_error is not None:
                raise first_error

        if whole is not None:
            whole_digest = whole.hexdigest()
            whole = None
        committer.close()
        if sync:
            fsync_fd(fd, out_name)

        if (whole_digest is not None and whole_expected is not None
                and whole_digest != whole_expected):
            for q in (partial, state_path):
                with contextlib.suppress(FileNotFoundError):
                    q.unlink()
            failed = False  # nothing to resume
            raise VerificationError(
                f"{out_name} does not match its SHA256 (expected {whole_expected}, got "
                f"{whole_digest})" + ("" if all(shard_expected) else
                                      "; some shards have no known SHA256 to tell which")
            )

        # the index, then the final name (still under the lock)
        idx_out = None
        if idx_src.is_file():
            idx_out = out_dir / idx_src.name
            if idx_out.resolve() != idx_src.resolve() and not same_bytes(idx_src, idx_out):
                copy_file_atomic(idx_src, idx_out)
        try:
            os.replace(partial, final)
        except OSError as exc:
            raise OutputError(
                f"cannot rename {partial} to {final}: {exc.strerror or exc}") from exc
        failed = False
        with contextlib.suppress(FileNotFoundError):
            state_path.unlink()
        fsync_dir(out_dir)
    finally:
        if whole is not None:
            whole.close()
        if committer is not None:
            committer.close(raise_error=False, flush=failed)
        os.close(fd)

    return UnshardResult(
        output=final,
        idx_output=idx_out,
        total_bytes=total,
        shards=[o for o in outcomes if o is not None],
        whole_digest=whole_digest,
        whole_expected=whole_expected,
        resumed_shards=resumed,
        verified=verify and all(e is not None for e in shard_expected),
        idx_checked=idx_checked,
        idx_status=idx_status,
        manifests=used,
        warnings=warnings,
    )
