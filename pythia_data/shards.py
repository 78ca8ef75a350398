"""Shard names, discovery and validation; shard and unshard.

Pythia's data ships as plain byte slices of ``BASE.bin`` named
``BASE-00000-of-00082.bin`` ... ``BASE-00082-of-00082.bin``: the number after ``of`` is the
index of the *last* shard (count - 1), not the count. Every shard but the last has the same
size (Pythia used 5,000,000,000 bytes); the last one holds the rest. The ``.idx`` is not
sharded and usually lies beside the shards as ``BASE.idx``.

:func:`find_shards` turns a path (a shard, the prefix, or a folder) into a validated
:class:`ShardSet`; :func:`unshard` reassembles ``BASE.bin`` in one verified, atomic,
resumable pass; :func:`shard` splits a ``.bin`` the way Pythia's ``shard_memmap.py`` did.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import (
    InputError,
    OutputError,
    ShardError,
    UsageError,
    VerificationError,
)

#: Pythia's shard size in bytes.
DEFAULT_SHARD_SIZE = 5_000_000_000

#: ``BASE-NNNNN-of-MMMMM.bin`` (Pythia pads to 5 digits; more digits are accepted).
SHARD_NAME_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5,})-of-(?P<last>\d{5,})\.bin$")


def shard_name(base: str, index: int, last_index: int) -> str:
    """The file name of shard ``index`` of a set whose last shard is ``last_index``.

    ``base`` is a bare name (no folder). Numbers are zero-padded to 5 digits, as Pythia's
    ``shard_memmap.py`` wrote them.
    """
    if index < 0 or last_index < 0 or index > last_index:
        raise UsageError(f"shard index {index} is out of range 0..{last_index}")
    return f"{base}-{index:05d}-of-{last_index:05d}.bin"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """``(base, index, last_index)`` for a shard file name, or ``None`` if it is not one."""
    m = SHARD_NAME_RE.match(name)
    if m is None:
        return None
    return m.group("base"), int(m.group("index")), int(m.group("last"))


@dataclass(frozen=True)
class ShardSet:
    """A complete, validated set of shards of one ``BASE.bin``.

    ``base`` is the prefix path without suffix (``dir/BASE``, a str); ``paths`` are the shard
    files in order; ``sizes`` their sizes in bytes.
    """

    base: str
    paths: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The bare base name (``BASE``)."""
        return os.path.basename(self.base)

    @property
    def directory(self) -> Path:
        return Path(self.base).parent

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def last_index(self) -> int:
        """The number written after ``of`` in the names (count - 1)."""
        return len(self.paths) - 1

    @property
    def shard_size(self) -> int:
        """The size of every shard but the last."""
        return self.sizes[0]

    @property
    def total_bytes(self) -> int:
        """The size of the reassembled ``BASE.bin``."""
        return int(sum(self.sizes))

    @property
    def offsets(self) -> list[int]:
        """Byte offset of each shard in ``BASE.bin``, plus the total at the end."""
        out = [0]
        for s in self.sizes:
            out.append(out[-1] + int(s))
        return out

    @property
    def idx_path(self) -> Path:
        """Where the (unsharded) index would lie: ``dir/BASE.idx``."""
        return Path(self.base + ".idx")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]


def _scan_folder(folder: Path) -> dict[tuple[str, int], list[tuple[int, Path]]]:
    """Shard files in ``folder`` grouped by ``(base, last_index)``."""
    groups: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError as exc:
        raise ShardError(f"folder not found: {folder}") from exc
    except NotADirectoryError as exc:
        raise ShardError(f"not a folder: {folder}") from exc
    except PermissionError as exc:
        raise ShardError(f"cannot read folder: {folder}") from exc
    for entry in entries:
        parsed = parse_shard_name(entry.name)
        if parsed is None:
            continue
        base, index, last = parsed
        groups[(base, last)].append((index, Path(entry.path)))
    return groups


def _validate(folder: Path, base: str, groups: dict[tuple[str, int], list[tuple[int, Path]]]) -> ShardSet:
    """Check the shards of ``base`` in ``groups`` form one complete set; build the ShardSet."""
    mine = {last: members for (b, last), members in groups.items() if b == base}
    if not mine:
        raise ShardError(f"no shards named {base}-NNNNN-of-MMMMM.bin in {folder}")
    if len(mine) > 1:
        lasts = ", ".join(f"-of-{last:05d}" for last in sorted(mine))
        raise ShardError(
            f"shards of {base} in {folder} disagree on the last shard number ({lasts}); "
            "mixed or mis-numbered shards"
        )
    last, members = next(iter(mine.items()))
    by_index: dict[int, list[Path]] = defaultdict(list)
    for index, path in members:
        by_index[index].append(path)
    dupes = sorted(i for i, ps in by_index.items() if len(ps) > 1)
    if dupes:
        names = ", ".join(p.name for p in by_index[dupes[0]])
        raise ShardError(f"shard {dupes[0]} of {base} appears more than once: {names}")
    extra = sorted(i for i in by_index if i > last)
    if extra:
        raise ShardError(
            f"unexpected shard {by_index[extra[0]][0].name}: its number is beyond the last "
            f"shard {last:05d} named in -of-{last:05d} (mis-numbered or extra shard)"
        )
    missing = [i for i in range(last + 1) if i not in by_index]
    if missing:
        shown = ", ".join(shard_name(base, i, last) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ShardError(
            f"{len(missing)} of {last + 1} shards of {base} missing in {folder}: {shown}{more}"
        )
    paths = [by_index[i][0] for i in range(last + 1)]
    sizes = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as exc:
            raise ShardError(f"cannot read shard {p}: {exc.strerror or exc}") from exc
        if not p.is_file():
            raise ShardError(f"shard is not a regular file: {p}")
        sizes.append(int(st.st_size))
    if len(paths) > 1:
        size0 = sizes[0]
        if size0 == 0:
            raise ShardError(f"shard {paths[0].name} is empty but is not the last shard")
        for p, s in zip(paths[1:-1], sizes[1:-1], strict=True):
            if s != size0:
                raise ShardError(
                    f"shard {p.name} has {s} bytes but shard {paths[0].name} has {size0}; "
                    "every shard but the last must have the same size (short or damaged shard?)"
                )
        if sizes[-1] > size0:
            raise ShardError(
                f"last shard {paths[-1].name} has {sizes[-1]} bytes, more than the "
                f"{size0} of the others"
            )
    return ShardSet(base=str(folder / base), paths=paths, sizes=sizes)


def find_shards(path: str | os.PathLike[str]) -> ShardSet:
    """Find and validate the shard set that ``path`` designates.

    ``path`` may be any shard's path (``dir/BASE-00003-of-00082.bin``), the prefix
    (``dir/BASE``, also accepted as ``dir/BASE.bin`` when that file does not exist), or a
    folder holding exactly one shard set. Raises :class:`ShardError` unless every shard
    ``0..last`` is present exactly once, no shard is numbered beyond the last or named with
    another last number, and every shard but the last has the same size (the last no larger).
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        groups = _scan_folder(p)
        bases = sorted({b for (b, _last) in groups})
        if not bases:
            raise ShardError(f"no shards (NAME-NNNNN-of-MMMMM.bin) in folder {p}")
        if len(bases) > 1:
            raise ShardError(
                f"folder {p} holds shards of several datasets ({', '.join(bases)}); "
                "name one shard or the prefix"
            )
        return _validate(p, bases[0], groups)
    parsed = parse_shard_name(p.name)
    if parsed is not None:
        folder = p.parent
        base = parsed[0]
        if not p.exists():
            raise ShardError(f"shard not found: {p}")
    else:
        folder = p.parent
        base = p.name
        if base.endswith((".bin", ".idx")) and not p.is_file():
            base = base[:-4]
        elif base.endswith((".bin", ".idx")):
            # An existing BASE.bin/.idx: look for its shards beside it.
            base = base[:-4]
    if not base:
        raise ShardError(f"not a shard, prefix or folder: {p}")
    groups = _scan_folder(folder if str(folder) else Path("."))
    return _validate(folder, base, groups)


def is_sharded_prefix(prefix: str | os.PathLike[str]) -> bool:
    """True when ``PREFIX.bin`` is absent but some ``PREFIX-NNNNN-of-MMMMM.bin`` exists."""
    p = Path(os.fspath(prefix))
    if Path(str(p) + ".bin").exists():
        return False
    folder = p.parent
    try:
        names = os.listdir(folder if str(folder) else ".")
    except OSError:
        return False
    for n in names:
        parsed = parse_shard_name(n)
        if parsed is not None and parsed[0] == p.name:
            return True
    return False


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
COPY_CHUNK = 4 << 20


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
            parts.append(f"index {self.idx_output}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "idx_output": str(self.idx_output) if self.idx_output else None,
            "total_bytes": self.total_bytes,
            "resumed_shards": self.resumed_shards,
            "verified": self.verified,
            "idx_checked": self.idx_checked,
            "whole_digest": self.whole_digest,
            "whole_expected": self.whole_expected,
            "whole_status": self.whole_status,
            "shards": [s.to_dict() for s in self.shards],
        }


def _pwrite(fd: int, data, offset: int) -> int:
    """One ``pwrite`` (module-level so tests can simulate a full disk)."""
    return os.pwrite(fd, data, offset)


def _pwrite_all(fd: int, view: memoryview, offset: int, out_name: str) -> None:
    done = 0
    n = len(view)
    while done < n:
        try:
            w = _pwrite(fd, view[done:], offset + done)
        except OSError as exc:
            raise OutputError(
                f"cannot write {out_name}: {exc.strerror or exc}; "
                "rerun the same command to resume from the last completed shard"
            ) from exc
        if w <= 0:
            raise OutputError(f"cannot write {out_name}: write returned {w}")
        done += w


def _fsync(fd: int, out_name: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {out_name}: {exc.strerror or exc}") from exc


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Cancelled(Exception):
    pass


class _SequentialHasher:
    """A thread hashing chunks in order (the whole-file SHA256) beside the copy loop."""

    def __init__(self, depth: int = 8) -> None:
        import queue

        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._h = hashlib.sha256()
        self._error: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="whole-file-sha256", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            data, done = item
            try:
                if self._error is None:
                    self._h.update(data)
            except BaseException as exc:  # pragma: no cover - hashlib does not fail
                self._error = exc
            finally:
                done.release()

    def update(self, data, done: threading.Semaphore) -> None:
        """Queue ``data``; ``done`` is released when it has been hashed."""
        self._q.put((data, done))

    def hexdigest(self) -> str:
        self._q.put(None)
        self._t.join()
        if self._error is not None:  # pragma: no cover
            raise self._error
        return self._h.hexdigest()

    def close(self) -> None:
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()


class _Committer:
    """Makes completed shards durable and records them in the state file, off the copy path.

    Without verification a shard enters the state file only after an fsync of the partial
    output that covers it, so whatever the state lists survives a crash; with verification
    the resumed run re-hashes what the state lists instead. The copy threads never wait.
    """

    def __init__(self, fd: int, out_name: str, state_path: Path, ss: ShardSet,
                 done: dict[int, dict], sync: bool = True) -> None:
        import queue

        self._sync = sync
        self._fd, self._out_name, self._state_path, self._ss = fd, out_name, state_path, ss
        self._done = done
        self._q: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self._t = threading.Thread(target=self._run, name="unshard-commit", daemon=True)
        self._t.start()

    def _run(self) -> None:
        import queue

        stop = False
        while not stop:
            batch = [self._q.get()]
            while True:  # take everything queued: one fsync and one state write for all
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            items = [b for b in batch if b is not None]
            stop = len(items) != len(batch)
            if not items or self._error is not None:
                continue
            try:
                if self._sync:
                    _fsync(self._fd, self._out_name)
                for i, rec in items:
                    self._done[i] = rec
                _save_state(self._state_path, self._ss, self._done)
            except BaseException as exc:
                self._error = exc

    def submit(self, i: int, rec: dict) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((i, rec))

    def close(self, raise_error: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._t.join()
        if raise_error and self._error is not None:
            raise self._error


def _hash_region(fd: int, offset: int, size: int, whole: _SequentialHasher | None,
                 progress, chunk: int = COPY_CHUNK) -> str:
    """SHA256 of ``size`` bytes of ``fd`` from ``offset`` (re-checking a resumed partial)."""
    h = hashlib.sha256()
    bufs = [bytearray(chunk), bytearray(chunk)]
    sems = [threading.Semaphore(1), threading.Semaphore(1)]
    done = 0
    k = 0
    while done < size:
        buf, sem = bufs[k % 2], sems[k % 2]
        sem.acquire()
        n = os.preadv(fd, [memoryview(buf)[: min(chunk, size - done)]], offset + done)
        if n <= 0:
            sem.release()
            raise InputError("the partial output is shorter than its resume state says")
        view = memoryview(buf)[:n]
        if whole is not None:
            whole.update(view, sem)
        else:
            sem.release()
        h.update(view)
        done += n
        k += 1
        if progress is not None:
            progress(n)
    for sem in sems:  # wait until the whole-file hasher is done with our buffers
        sem.acquire()
    return h.hexdigest()


def _copy_shard(src: Path, size: int, out_fd: int, offset: int, out_name: str, *,
                hash_it: bool, whole: _SequentialHasher | None, progress,
                cancel: threading.Event, src_offset: int = 0, check_size: bool = True,
                chunk: int = COPY_CHUNK) -> str | None:
    """Copy ``size`` bytes of ``src`` from ``src_offset`` into the output at ``offset``.

    Returns their SHA256 when ``hash_it``. Without hashing the copy stays in the kernel.
    """
    try:
        f = open(src, "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        raise ShardError(f"cannot read shard {src}: {exc.strerror or exc}") from exc
    with f:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        if check_size and os.fstat(f.fileno()).st_size != src_offset + size:
            raise ShardError(f"{src.name} changed size while being copied")
        if not hash_it and whole is None:
            return _copy_range(f.fileno(), src_offset, size, out_fd, offset, out_name,
                               progress, cancel)
        h = hashlib.sha256() if hash_it else None
        nbuf = 3 if whole is not None else 1
        bufs = [bytearray(chunk) for _ in range(nbuf)]
        sems = [threading.Semaphore(1) for _ in range(nbuf)]
        done = 0
        k = 0
        while done < size:
            if cancel.is_set():
                raise _Cancelled
            buf, sem = bufs[k % nbuf], sems[k % nbuf]
            sem.acquire()
            try:
                n = os.preadv(f.fileno(), [memoryview(buf)[: min(chunk, size - done)]],
                              src_offset + done)
            except OSError as exc:
                sem.release()
                raise ShardError(f"cannot read shard {src}: {exc.strerror or exc}") from exc
            if not n:
                sem.release()
                raise ShardError(f"{src.name} shrank while being copied")
            view = memoryview(buf)[:n]
            if whole is not None:
                whole.update(view, sem)
            else:
                sem.release()
            if h is not None:
                h.update(view)
            _pwrite_all(out_fd, view, offset + done, out_name)
            done += n
            k += 1
            if progress is not None:
                progress(n)
        for sem in sems:
            sem.acquire()
        return h.hexdigest() if h is not None else None


def _copy_range(in_fd: int, src_offset: int, size: int, out_fd: int, offset: int,
                out_name: str, progress, cancel: threading.Event) -> None:
    """Copy without hashing: ``copy_file_range`` in the kernel (what ``cat`` does)."""
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    buf = None
    while done < size:
        if cancel.is_set():
            raise _Cancelled
        n = min(COPY_CHUNK * 16, size - done)
        if use_cfr:
            try:
                w = os.copy_file_range(in_fd, out_fd, n, src_offset + done, offset + done)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    use_cfr = False
                    continue
                raise OutputError(
                    f"cannot write {out_name}: {exc.strerror or exc}; "
                    "rerun the same command to resume from the last completed shard"
                ) from exc
            if w == 0:
                raise ShardError("an input file shrank while being copied")
        else:
            if buf is None:
                buf = bytearray(COPY_CHUNK)
            n = min(COPY_CHUNK, n)
            r = os.preadv(in_fd, [memoryview(buf)[:n]], src_offset + done)
            if r <= 0:
                raise ShardError("an input file shrank while being copied")
            _pwrite_all(out_fd, memoryview(buf)[:r], offset + done, out_name)
            w = r
        done += w
        if progress is not None:
            progress(w)
    return None


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
    _fsync_dir(state_path.parent)


def _copy_file_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".partial")
    try:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, COPY_CHUNK)
            fo.flush()
            os.fsync(fo.fileno())
        os.replace(tmp, dst)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot copy {src} to {dst}: {exc.strerror or exc}") from exc


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x = fa.read(COPY_CHUNK)
                if x != fb.read(COPY_CHUNK):
                    return False
                if not x:
                    return True
    except OSError:
        return False


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
) -> UnshardResult:
    """Reassemble ``BASE.bin`` from its shards in one pass; see the module notes above.

    ``shard``: any shard's path, the prefix, or the folder holding them. ``output_dir``:
    where ``BASE.bin`` goes (default: beside the shards). ``expected``: a manifest (path or
    :class:`pythia_data.checksum.Manifest`) with per-shard and/or whole-file SHA256s; the
    known manifests are consulted too. ``verify=False`` copies without hashing. ``jobs``:
    shards copied side by side (default: all cores; 1 when the whole-file hash is computed).
    ``progress(n)`` is called with bytes processed. ``sync=False`` skips the fsyncs of the
    data (as ``cat`` and ``cp`` do): an interrupted or killed run is still safe to rerun,
    but after a power loss the output may hold bytes that never reached the disk. Raises
    :class:`VerificationError` (naming the shard) on a mismatch, leaving no ``BASE.bin``;
    :class:`ShardError` before writing anything if the shard set or its size against
    ``BASE.idx`` is wrong;
    :class:`OutputError` if the output cannot be written (rerun to resume).
    """
    from pythia_data.checksum import Manifest, known_manifest

    ss = find_shards(shard)
    out_dir = Path(os.fspath(output_dir)) if output_dir is not None else ss.directory
    out_name = ss.name + ".bin"
    final = out_dir / out_name
    partial = out_dir / (out_name + ".partial")
    state_path = out_dir / (out_name + ".partial.json")
    total = ss.total_bytes

    # -- checks before writing anything
    idx_src = ss.idx_path
    idx_checked = False
    if idx_src.is_file():
        from pythia_data.indexed import expected_bin_bytes

        want = expected_bin_bytes(idx_src)
        if want != total:
            raise ShardError(
                f"the {ss.count} shards of {ss.name} hold {total} bytes but {idx_src.name} "
                f"expects {want}: a shard is missing, truncated or from another dataset"
            )
        idx_checked = True
    if final.exists() and not overwrite:
        raise OutputError(f"{final} already exists (remove it or pass --force)")
    if final.resolve() in {p.resolve() for p in ss.paths}:
        raise UsageError(f"the output {final} would overwrite a shard")

    manifest = None
    if expected is not None:
        manifest = expected if isinstance(expected, Manifest) else Manifest.load(expected)
    lookups = [m for m in (manifest, known_manifest()) if m is not None]

    def lookup(name: str) -> str | None:
        for m in lookups:
            e = m.get(name, "sha256")
            if e is not None:
                return e.digest
        return None

    shard_expected = [lookup(p.name) if verify else None for p in ss.paths]
    whole_expected = lookup(out_name) if verify else None
    compute_whole = verify and (full_hash or (
        whole_expected is not None and any(e is None for e in shard_expected)))

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc

    done: dict[int, dict] = {}
    if partial.exists():
        loaded = _load_state(state_path, ss)
        if loaded is not None and partial.stat().st_size == total:
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
    if partial.exists() and done:
        with contextlib.suppress(OSError):
            need = max(0, total - partial.stat().st_blocks * 512)
    if free is not None and need > free:
        raise OutputError(
            f"not enough space in {out_dir}: {out_name} needs {need} more bytes, {free} free"
        )

    try:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | (0 if done else os.O_TRUNC), 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {partial}: {exc.strerror or exc}") from exc
    outcomes: list[ShardOutcome | None] = [None] * ss.count
    whole: _SequentialHasher | None = None
    committer: _Committer | None = None
    offsets = ss.offsets
    resumed = 0
    whole_digest = None
    try:
        try:
            os.ftruncate(fd, total)
        except OSError as exc:
            raise OutputError(f"cannot write {partial}: {exc.strerror or exc}") from exc
        if not done:
            _save_state(state_path, ss, done)
        if compute_whole:
            whole = _SequentialHasher()
        # With verification, a resumed run re-hashes every recorded shard from the partial
        # file, so the partial need not be fsynced per shard (only before the final rename);
        # without it, the partial is fsynced before a shard is recorded.
        committer = _Committer(fd, out_name, state_path, ss, done, sync=sync and not verify)
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
                raise _Cancelled
            rec = done.get(i)
            if rec is not None:
                # written by an earlier run: re-read it from the partial, write nothing
                if not verify and whole is None:
                    outcomes[i] = ShardOutcome(ss.paths[i].name, ss.sizes[i], "resumed")
                    with lock:
                        resumed += 1
                    return
                digest = _hash_region(fd, offsets[i], ss.sizes[i], whole, progress)
                if not verify or digest == rec.get("sha256"):
                    finish(i, digest if verify else None, "resumed")
                    with lock:
                        resumed += 1
                    return
                # the partial no longer holds what was written there: copy the shard again
            digest = _copy_shard(ss.paths[i], ss.sizes[i], fd, offsets[i], out_name,
                                 hash_it=verify, whole=whole, progress=progress, cancel=cancel)
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
            from concurrent.futures import ThreadPoolExecutor

            first_error: BaseException | None = None
            with ThreadPoolExecutor(max_workers=min(njobs, ss.count)) as pool:
                futures = [pool.submit(process, i) for i in range(ss.count)]
                for fut in futures:
                    try:
                        fut.result()
                    except _Cancelled:
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
            _fsync(fd, out_name)
    finally:
        if whole is not None:
            whole.close()
        if committer is not None:
            committer.close(raise_error=False)
        os.close(fd)

    if whole_digest is not None and whole_expected is not None and whole_digest != whole_expected:
        for p in (partial, state_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise VerificationError(
            f"{out_name} does not match its SHA256 (expected {whole_expected}, got "
            f"{whole_digest})" + ("" if all(shard_expected) else
                                  "; some shards have no known SHA256 to tell which")
        )

    # 3. the index, then the final name
    idx_out = None
    if idx_src.is_file():
        idx_out = out_dir / idx_src.name
        if idx_out.resolve() != idx_src.resolve() and not _same_bytes(idx_src, idx_out):
            _copy_file_atomic(idx_src, idx_out)
    try:
        os.replace(partial, final)
    except OSError as exc:
        raise OutputError(f"cannot rename {partial} to {final}: {exc.strerror or exc}") from exc
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    _fsync_dir(out_dir)
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
    )


# =======================================================================================
# shard: split BASE.bin the way Pythia's shard_memmap.py did


@dataclass
class ShardResult:
    """What :func:`shard` wrote: the shard paths, sizes and (if hashed) SHA256s."""

    paths: list[Path]
    sizes: list[int]
    digests: list[str | None]
    manifest: Path | None = None

    def to_dict(self) -> dict:
        return {
            "shards": [
                {"path": str(p), "size": s, "sha256": d}
                for p, s, d in zip(self.paths, self.sizes, self.digests, strict=True)
            ],
            "manifest": str(self.manifest) if self.manifest else None,
        }


def shard_layout(total_bytes: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[int]:
    """Shard sizes Pythia's ``shard_memmap.py`` produces for a file of ``total_bytes``.

    The last index is ``total_bytes // shard_size``, so when the size is an exact multiple
    the last shard is empty -- kept for name compatibility with Pythia's scripts.
    """
    if shard_size <= 0:
        raise UsageError(f"shard size must be positive, got {shard_size}")
    if total_bytes < 0:
        raise UsageError(f"file size must not be negative, got {total_bytes}")
    last = total_bytes // shard_size
    return [shard_size] * last + [total_bytes - last * shard_size]


def shard(
    bin_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    checksums: bool = True,
    overwrite: bool = False,
    progress=None,
) -> ShardResult:
    """Split ``BASE.bin`` into ``BASE-NNNNN-of-MMMMM.bin`` shards of ``shard_size`` bytes.

    Names follow Pythia exactly (``MMMMM`` = last index). Each shard is written under
    ``NAME.partial`` and renamed when complete. With ``checksums``, each shard's SHA256 is
    computed while it is written and ``BASE.sha256`` (``sha256sum`` style) is written beside
    the shards. The ``.idx`` (if beside the input) is copied to the output folder.
    """
    src = Path(os.fspath(bin_path))
    if not src.name.endswith(".bin"):
        raise UsageError(f"expected a .bin file, got {src}")
    if not src.is_file():
        raise InputError(f"no such file: {src}")
    base = src.name[:-4]
    total = src.stat().st_size
    sizes = shard_layout(total, shard_size)
    last = len(sizes) - 1
    out_dir = Path(os.fspath(output_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    paths = [out_dir / shard_name(base, i, last) for i in range(len(sizes))]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise OutputError(f"{p} already exists (remove it or pass --force)")
    idx_src = src.with_suffix(".idx")
    if idx_src.is_file():
        from pythia_data.indexed import expected_bin_bytes

        want = expected_bin_bytes(idx_src)
        if want != total:
            raise InputError(f"{src.name} has {total} bytes but {idx_src.name} expects {want}")
    digests: list[str | None] = []
    cancel = threading.Event()
    offset = 0
    for p, size in zip(paths, sizes, strict=True):
        tmp = p.with_name(p.name + ".partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from exc
        try:
            digest = _copy_shard(src, size, fd, 0, tmp.name, hash_it=checksums, whole=None,
                                 progress=progress, cancel=cancel, src_offset=offset,
                                 check_size=False)
            _fsync(fd, tmp.name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, p)
        digests.append(digest)
        offset += size
    manifest = None
    if checksums:
        from pythia_data.checksum import atomic_write_text, format_manifest

        manifest = out_dir / f"{base}.sha256"
        atomic_write_text(manifest, format_manifest(
            (p.name, d) for p, d in zip(paths, digests, strict=True) if d))
    if idx_src.is_file():
        idx_out = out_dir / idx_src.name
        if idx_out.resolve() != idx_src.resolve():
            _copy_file_atomic(idx_src, idx_out)
    _fsync_dir(out_dir)
    return ShardResult(paths=paths, sizes=sizes, digests=digests, manifest=manifest)
