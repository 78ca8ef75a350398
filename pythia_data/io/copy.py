"""Copy and hash engines: positioned writes, kernel copies (``copy_file_range``), copies
that hash while they write, a whole-file SHA256 on a second thread, a re-hash of a region.

Used by unshard (shards into one preallocated file) and split (one file into shards).
Every error names the file involved.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from pathlib import Path

from pythia_data.errors import InputError, OutputError, ShardError
from pythia_data.io.atomic import AtomicOutput

#: Bytes per read/write of the copy loops.
COPY_CHUNK = 4 << 20

#: ``sync_file_range`` flag: start writeback of the range, do not wait for it.
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range():
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Ask the kernel to start writing ``size`` bytes of ``fd`` at ``offset`` to disk now,
    without waiting (``sync_file_range(SYNC_FILE_RANGE_WRITE)``; a no-op where missing).

    A durable copy then overlaps its disk writes with the copy itself instead of leaving
    all the dirty pages to one final ``fsync`` (which still follows: this is no guarantee).
    """
    if _sync_file_range is not None and size > 0:
        _sync_file_range(fd, offset, size, _SYNC_FILE_RANGE_WRITE)

def pwrite_raw(fd: int, data, offset: int) -> int:
    """One ``pwrite`` (module-level so tests can simulate a full disk)."""
    return os.pwrite(fd, data, offset)


def pwrite_all(fd: int, view: memoryview, offset: int, out_name: str) -> None:
    done = 0
    n = len(view)
    while done < n:
        try:
            w = pwrite_raw(fd, view[done:], offset + done)
        except OSError as exc:
            raise OutputError(
                f"cannot write {out_name}: {exc.strerror or exc}; "
                "rerun the same command to resume from the last completed shard"
            ) from exc
        if w <= 0:
            raise OutputError(f"cannot write {out_name}: write returned {w}")
        done += w


def fsync_fd(fd: int, out_name: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {out_name}: {exc.strerror or exc}") from exc


class Cancelled(Exception):
    pass


class SequentialHasher:
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


def hash_region(fd: int, offset: int, size: int, whole: SequentialHasher | None,
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


def copy_hashed(src: Path, size: int, out_fd: int, offset: int, out_name: str, *,
                hash_it: bool, whole: SequentialHasher | None, progress,
                cancel: threading.Event, src_offset: int = 0, check_size: bool = True,
                chunk: int = COPY_CHUNK, writeback: bool = False) -> str | None:
    """Copy ``size`` bytes of ``src`` from ``src_offset`` into the output at ``offset``.

    Returns their SHA256 when ``hash_it``. Without hashing the copy stays in the kernel.
    ``writeback``: start writing each chunk to disk as soon as it is written (for a copy
    that will be fsynced).
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
            return copy_range(f.fileno(), src_offset, size, out_fd, offset, out_name,
                               progress, cancel, writeback=writeback)
        h = hashlib.sha256() if hash_it else None
        nbuf = 3 if whole is not None else 1
        bufs = [bytearray(chunk) for _ in range(nbuf)]
        sems = [threading.Semaphore(1) for _ in range(nbuf)]
        done = 0
        k = 0
        while done < size:
            if cancel.is_set():
                raise Cancelled
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
            pwrite_all(out_fd, view, offset + done, out_name)
            if writeback:
                start_writeback(out_fd, offset + done, n)
            done += n
            k += 1
            if progress is not None:
                progress(n)
        for sem in sems:
            sem.acquire()
        return h.hexdigest() if h is not None else None


def copy_range(in_fd: int, src_offset: int, size: int, out_fd: int, offset: int,
                out_name: str, progress, cancel: threading.Event,
                writeback: bool = False) -> None:
    """Copy without hashing: ``copy_file_range`` in the kernel (what ``cat`` does)."""
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    buf = None
    while done < size:
        if cancel.is_set():
            raise Cancelled
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
            pwrite_all(out_fd, memoryview(buf)[:r], offset + done, out_name)
            w = r
        if writeback:
            start_writeback(out_fd, offset + done, w)
        done += w
        if progress is not None:
            progress(w)
    return None


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy a whole file to ``dst`` with the atomic-output protocol."""
    try:
        fi = open(src, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {src}: {exc.strerror or exc}") from exc
    with fi, AtomicOutput(dst) as out:
        while True:
            block = fi.read(COPY_CHUNK)
            if not block:
                break
            out.write(block)


def same_bytes(a: Path, b: Path) -> bool:
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
