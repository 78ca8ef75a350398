"""Verified, resumable downloads of a dataset repository into a local folder.

:func:`plan_download` lists the repository (size and SHA256 of every selected file, at one
pinned commit), finds what is already verified locally, compares the hub's digests with
Pythia's published ones and checks free disk space. :func:`run_download` then fetches the
rest through ``huggingface_hub.hf_hub_download`` (which uses Xet against the real hub when
``hf_xet`` is installed) into ``DIR/.pythia-data/incoming/``, hashes each file as soon as it
lands — in a second pool, overlapped with the next downloads — and only then renames it to
its final name. A file that fails is fetched once more; if it fails again it is deleted and
reported (the command exits 1). The folder never holds an unverified file under a final
name, and a rerun skips every verified file without reading it (see :mod:`.state`).

Progress: ``progress(phase, path, nbytes)`` with phase ``"download"`` or ``"verify"``, from
any thread (``nbytes`` may be negative when a transfer restarts).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import OutputError, PythiaDataError, UsageError
from pythia_data.hub import known as known_mod
from pythia_data.hub import npycheck
from pythia_data.hub.remote import (
    CONNECT_TIMEOUT,
    HubError,
    HubUnreachableError,
    RemoteFile,
    endpoint,
    list_repo,
    translate,
)
from pythia_data.hub.state import (
    STAGING,
    STATE_DIR,
    DownloadState,
    atomic_write_text,
    hash_as,
    known_manifest,
    manifest_name,
)

Progress = Callable[[str, str, int], None]


class InsufficientSpaceError(OutputError):
    """Not enough free disk space for the download."""


def human(n: int | float) -> str:
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass
class DownloadPlan:
    repo_id: str
    revision: str
    commit: str
    local_dir: Path
    files: list[RemoteFile]
    known: known_mod.KnownDataset | None = None
    verified: list[str] = field(default_factory=list)  # skipped: verified by an earlier run
    to_fetch: list[RemoteFile] = field(default_factory=list)
    to_adopt: list[RemoteFile] = field(default_factory=list)  # present, same size: hash first
    disagreements: list[dict] = field(default_factory=list)  # hub vs Pythia's published hash
    known_bad: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    free_bytes: int | None = None
    manifest_path: Path | None = None

    @property
    def total_bytes(self) -> int:
        return int(sum(f.size for f in self.files))

    @property
    def fetch_bytes(self) -> int:
        return int(sum(f.size for f in self.to_fetch))

    def to_dict(self) -> dict:
        return {
            "repo_id": self.repo_id, "name": self.known.name if self.known else None,
            "revision": self.revision, "commit": self.commit, "local_dir": str(self.local_dir),
            "files": len(self.files), "bytes": self.total_bytes,
            "verified": len(self.verified), "to_fetch": len(self.to_fetch),
            "to_adopt": len(self.to_adopt), "fetch_bytes": self.fetch_bytes,
            "free_bytes": self.free_bytes,
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "disagreements": self.disagreements, "known_bad": self.known_bad,
            "warnings": self.warnings,
        }


@dataclass
class DownloadResult:
    plan: DownloadPlan
    downloaded: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # already there, hashed and kept
    retried: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"path", "reason"}
    checks: list[npycheck.CheckResult] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    allow_bad: bool = False

    @property
    def bad_checks(self) -> list[npycheck.CheckResult]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        if self.failed:
            return False
        if self.allow_bad:
            return True
        return not self.bad_checks and not self.plan.disagreements

    def to_dict(self) -> dict:
        return {
            **self.plan.to_dict(), "ok": self.ok, "downloaded": self.downloaded,
            "adopted": self.adopted, "retried": self.retried, "failed": self.failed,
            "checks": [c.to_dict() for c in self.checks], "next_steps": self.next_steps,
        }


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def default_local_dir(repo_id: str) -> Path:
    """``./NAME`` for ``OWNER/NAME`` (like ``hf download --local-dir``)."""
    return Path(repo_id.rsplit("/", 1)[-1])


def plan_download(
    name_or_repo: str,
    local_dir: str | os.PathLike[str] | None = None,
    *,
    include: Sequence[str] = (),
    revision: str | None = None,
    token=None,
    write_manifest: bool = True,
    check_space: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> DownloadPlan:
    """Everything to know before downloading; writes ``DIR/NAME.sha256`` (unless
    ``write_manifest`` is False) and raises :class:`InsufficientSpaceError` when the files
    still to fetch do not fit."""
    repo_id, known = known_mod.lookup(name_or_repo)
    if "/" not in repo_id:
        names = ", ".join(known_mod.KNOWN)
        raise UsageError(f"unknown dataset {name_or_repo!r}: give OWNER/NAME or one of {names}")
    listing = list_repo(repo_id, revision, include, token=token, connect_timeout=connect_timeout)
    local = Path(local_dir) if local_dir is not None else default_local_dir(repo_id)
    plan = DownloadPlan(repo_id, listing.revision, listing.commit, local, listing.files, known)

    state = DownloadState(local)
    km = known_manifest()
    for f in listing.files:
        expected = km.get(f.path, "sha256")
        if f.sha256 and expected is not None and expected.digest != f.sha256:
            plan.disagreements.append({"path": f.path, "hub": f.sha256, "pythia": expected.digest})
        reason = known_mod.known_bad(repo_id, f.path)
        if reason:
            plan.known_bad.append({"path": f.path, "reason": reason})
        if state.is_verified(f.path, f.digest, f.size):
            plan.verified.append(f.path)
            continue
        try:
            size = os.path.getsize(local / f.path)
        except OSError:
            size = None
        (plan.to_adopt if size == f.size else plan.to_fetch).append(f)

    # The index belongs with its shards (pythia #126, #180): warn when it is left out.
    paths = {f.path for f in listing.files}
    if include:
        from pythia_data.format.shardset import parse_shard_name

        full = list_repo(repo_id, listing.commit, (), token=token,
                         connect_timeout=connect_timeout) if any(
            parse_shard_name(os.path.basename(p)) for p in paths) else None
        if full is not None:
            idx = [g.path for g in full.files if g.path.endswith(".idx") and g.path not in paths]
            if idx:
                plan.warnings.append(
                    f"{', '.join(idx)} is not selected: the shards cannot be read without it "
                    f"(add --include '{idx[0]}')")

    if check_space:
        free = shutil.disk_usage(_existing_parent(local)).free
        plan.free_bytes = int(free)
        if plan.fetch_bytes > free:
            raise InsufficientSpaceError(
                f"not enough disk space in {local}: {human(plan.fetch_bytes)} needed for "
                f"{len(plan.to_fetch)} files, {human(free)} free")
    if write_manifest and plan.files:
        lfs = [(f.path, f.sha256) for f in plan.files if f.sha256]
        if lfs:
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {local}: {exc.strerror or exc}") from exc
            plan.manifest_path = local / manifest_name(repo_id)
            atomic_write_text(plan.manifest_path, "".join(f"{d}  {p}\n" for p, d in lfs))
    return plan


class _Meter:
    """What ``hf_hub_download`` takes as ``tqdm_class``: it forwards byte counts to our
    callback and shows nothing (bars belong to the CLI)."""

    def __init__(self, callback: Callable[[int], None] | None, **kwargs):
        self._callback = callback
        self.n = kwargs.get("initial", 0) or 0
        self.total = kwargs.get("total")

    def update(self, n=1):
        self.n += n or 0
        if self._callback is not None and n:
            self._callback(int(n))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass

    def __getattr__(self, name):  # set_description, refresh, update_transfer ...: no-ops
        return lambda *a, **k: None


def _meter_class(callback: Callable[[int], None] | None):
    class Meter(_Meter):
        def __init__(self, *args, **kwargs):
            super().__init__(callback, **kwargs)

    return Meter


def _quiet_remove(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        p.unlink()


def run_download(
    plan: DownloadPlan,
    *,
    jobs: int = 1,
    hash_jobs: int | None = None,
    progress: Progress | None = None,
    token=None,
    allow_bad: bool = False,
    check_indexes: bool = True,
) -> DownloadResult:
    """Fetch, verify and place every file of ``plan`` still missing (see module doc).

    Hub errors (missing repository, 401, no connection) raise; a file that fails its hash
    twice is listed in ``result.failed`` (``result.ok`` is then False).
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    from huggingface_hub import hf_hub_download

    local = plan.local_dir
    staging = local / STATE_DIR / STAGING
    # huggingface_hub's per-process temporary files of an interrupted run are never resumed.
    for leftover in staging.glob(".cache/huggingface/download/**/*.incomplete"):
        _quiet_remove(leftover)
    state = DownloadState(local)
    result = DownloadResult(plan, allow_bad=allow_bad)
    lock = threading.Lock()
    ep = endpoint()
    hash_jobs = hash_jobs or max(1, min(jobs, os.cpu_count() or 1))

    def report(phase: str, path: str):
        if progress is None:
            return None
        return lambda n: progress(phase, path, n)

    def fetch(f: RemoteFile) -> Path:
        try:
            got = hf_hub_download(
                plan.repo_id, f.path, repo_type="dataset", revision=plan.commit,
                local_dir=staging, endpoint=ep, token=token,
                tqdm_class=_meter_class(report("download", f.path)),
            )
        except PythiaDataError:
            raise
        except Exception as exc:
            if _out_of_space(exc):
                raise OutputError(f"out of space in {local} while downloading {f.path} "
                                  f"({f.size:,} bytes); free some space and rerun (files "
                                  "already verified are kept)") from None
            if isinstance(exc, ValueError):
                raise HubError(f"{plan.repo_id}: {f.path}: "
                               f"{' '.join(str(exc).split())[:300]}") from None
            err = translate(exc, f"{plan.repo_id}: {f.path}")
            if err is None:
                if isinstance(exc, OSError):  # e.g. size check failed after the transfer
                    raise _Transient(" ".join(str(exc).split())[:300]) from None
                raise
            if isinstance(err, HubUnreachableError) or type(err) is HubError:
                raise _Transient(str(err)) from None
            raise err from None
        return Path(got)

    def verify(f: RemoteFile, p: Path) -> str:
        try:
            return hash_as(p, f.algorithm, progress=report("verify", f.path))
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"

    def place(f: RemoteFile, staged: Path) -> None:
        final = local / f.path
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            state.record(f.path, f.algorithm, f.digest)
        except OSError as exc:
            if _out_of_space(exc):
                raise OutputError(f"out of space in {local} while placing {f.path}") from None
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None

    def reject_existing(f: RemoteFile) -> None:
        """Move a pre-existing file that failed its hash out of its final name."""
        final = local / f.path
        aside = local / STATE_DIR / "rejected" / f.path
        aside.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(final, aside)
        state.forget(f.path)
        with lock:
            plan.warnings.append(f"{f.path}: the file already there did not match the hub's "
                                 f"digest; moved to {aside}")

    attempts: dict[str, int] = {}
    pending: dict[Future, tuple[str, RemoteFile, Path | None]] = {}
    fatal: list[BaseException] = []
    dl_pool = ThreadPoolExecutor(jobs, thread_name_prefix="hub-dl")
    hash_pool = ThreadPoolExecutor(hash_jobs, thread_name_prefix="hub-hash")

    def start_fetch(f: RemoteFile) -> None:
        if fatal:
            return
        attempts[f.path] = attempts.get(f.path, 0) + 1
        pending[dl_pool.submit(fetch, f)] = ("fetch", f, None)

    def fail_or_retry(f: RemoteFile, reason: str) -> None:
        if attempts.get(f.path, 0) < 2 and not fatal:
            result.retried.append(f.path)
            start_fetch(f)
        else:
            result.failed.append({"path": f.path, "reason": reason})

    try:
        for f in plan.to_adopt:
            pending[hash_pool.submit(verify, f, local / f.path)] = ("adopt", f, local / f.path)
        for f in plan.to_fetch:
            start_fetch(f)
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                what, f, p = pending.pop(fut)
                if fut.cancelled():
                    continue
                try:
                    value = fut.result()
                except _Transient as exc:
                    fail_or_retry(f, str(exc))
                    continue
                except Exception as exc:  # hub errors end the run (after the work in flight)
                    fatal.append(exc)
                    for other in pending:
                        other.cancel()
                    continue
                if what == "fetch":
                    pending[hash_pool.submit(verify, f, value)] = ("verify", f, value)
                elif what == "adopt":
                    if value == f.digest:
                        state.record(f.path, f.algorithm, f.digest)
                        result.adopted.append(f.path)
                    else:
                        reject_existing(f)
                        start_fetch(f)
                elif value == f.digest:  # verified
                    place(f, p)
                    result.downloaded.append(f.path)
                else:
                    _quiet_remove(p)
                    fail_or_retry(f, f"{f.algorithm} mismatch (expected {f.digest}, got {value})")
    except BaseException:
        dl_pool.shutdown(wait=False, cancel_futures=True)
        hash_pool.shutdown(wait=False, cancel_futures=True)
        raise
    dl_pool.shutdown()
    hash_pool.shutdown()
    if fatal:
        raise fatal[0]

    if not result.failed:
        shutil.rmtree(staging, ignore_errors=True)
    if check_indexes:
        result.checks = check_indexes_in(plan, state)
    for bad in plan.known_bad:
        hit = [c for c in result.checks if c.path.endswith(bad["path"])]
        if hit and all(c.ok for c in hit):
            plan.warnings.append(f"{bad['path']}: listed as known bad ({bad['reason'].split(':')[0]}) "
                                 f"but passes the structural check: it looks fixed")
    result.next_steps = next_steps(plan)
    return result


def _out_of_space(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a full disk or quota."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class _Transient(Exception):
    """A download attempt failed in a way worth one more try (connection, size mismatch)."""


def check_indexes_in(plan: DownloadPlan, state: DownloadState | None = None,
                     progress: Progress | None = None) -> list[npycheck.CheckResult]:
    """Structural checks of the GPT-NeoX index files among ``plan.files`` that are present
    (each file's result is remembered by digest, so a rerun does not read it again)."""
    state = state or DownloadState(plan.local_dir)
    out = []
    present = []
    for f in plan.files:
        if npycheck.kind_of(os.path.basename(f.path)) is None:
            continue
        p = plan.local_dir / f.path
        if not p.is_file():
            continue
        present.append(p)
        cached = state.check_result(f.digest) if f.digest else None
        if cached is not None:
            out.append(npycheck.CheckResult(str(p), cached["kind"], cached["ok"], cached["message"]))
            continue
        cb = (lambda n, _p=f.path: progress("check", _p, n)) if progress else None
        r = npycheck.check_file(p, cb)
        if f.digest:
            state.record_check(f.digest, {"kind": r.kind, "ok": r.ok, "message": r.message})
        out.append(r)
    out += npycheck.check_run(present)
    return out


def next_steps(plan: DownloadPlan) -> list[str]:
    """What to run next on the downloaded shards (unshard, or read them in place)."""
    from pythia_data.format.shardset import parse_shard_name

    sets: dict[str, str] = {}
    for f in plan.files:
        parsed = parse_shard_name(os.path.basename(f.path))
        if parsed is not None and f.path.endswith(".bin"):
            folder = os.path.dirname(f.path)
            prefix = os.path.join(folder, parsed[0]) if folder else parsed[0]
            sets.setdefault(prefix, f.path)
    steps = []
    d = plan.local_dir
    preshuffled = plan.known is not None and plan.known.kind == "preshuffled"
    for prefix, first in sorted(sets.items()):
        order = " --order preshuffled" if preshuffled else ""
        steps.append(f"pythia-data batches {d / prefix}{order} -s 0 -e 0 -o batch0.npy"
                     f"   # read the shards in place")
        steps.append(f"pythia-data unshard {d / first} -o MERGED_DIR"
                     f"   # one {'~603 GB' if preshuffled else 'merged'} .bin (needs that much "
                     f"more disk)")
    return steps
