"""The one output protocol of pythia-data: every file a command writes goes through here.

Rules (docs/architecture.md, "Outputs"):

* a **regular file** (new or existing) is written atomically: the bytes go to
  ``FINAL.partial`` in the same folder, which is fsynced and renamed over ``FINAL`` on
  :meth:`AtomicOutput.commit` (then the folder is fsynced). An exception, Ctrl-C or a full
  disk removes the partial file; nothing half-written ever appears under ``FINAL``;
* an existing **symlink** is resolved and its target is written atomically (the link stays);
* anything that is **not a regular file** (a FIFO, a character device such as
  ``/dev/stdout`` or ``/dev/null``, ``/dev/fd/N`` from a shell's ``>(...)``) is opened and
  streamed into as it is: it cannot be replaced and must not be;
* ``-`` is standard output (or the stream passed in);
* new files honour the umask (mode ``0666 & ~umask``, like ``open()``; never mkstemp's 0600);
* before anything is created or truncated, a separate lock file ``.NAME.pythia-lock`` beside
  ``FINAL`` is locked (``flock``): a second run writing the same output fails at once with
  "another pythia-data is writing FINAL" and touches nothing (not the first run's partial
  file, not the committed ``FINAL``). The lock dies with its process, so a stale
  ``.partial`` (or lock file) from a killed run is simply reused; the lock file is removed
  when the output is committed or aborted (a later locker re-checks that the file it locked
  is still the one on disk). A command can take the lock at its very start
  (:func:`claim_outputs`), before a slow start-up, so the second run is refused at once;
* Ctrl-C arriving while an output is being opened or committed, or while its lock file is
  removed, is delivered just after,
  and :func:`abort_all` (called by the CLI on any failure) removes the partial files of
  outputs that were opened but never committed or aborted;
* every error names the file (``OutputError``, exit code 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Iterable
from typing import BinaryIO

from pythia_data.errors import OutputError, OutputExistsError, UsageError

try:  # pragma: no cover - always present on Linux/macOS
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PARTIAL = ".partial"

__all__ = [
    "PARTIAL",
    "AtomicGroup",
    "AtomicOutput",
    "OutputLock",
    "abort_all",
    "atomic_write_bytes",
    "claim_outputs",
    "atomic_write_text",
    "ensure_folder",
    "fsync_dir",
    "interrupts_deferred",
    "is_stream_target",
    "lock_file",
    "lock_path",
    "output_lock",
    "refuse_overlap",
    "same_file",
]


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder so a rename inside it is durable (best effort: some filesystems
    refuse to open or sync folders)."""
    try:
        fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_folder(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Create ``folder`` and its parents if needed (OutputError naming it otherwise)."""
    text = os.fspath(folder) or "."
    if os.path.isdir(text):
        return
    try:
        os.makedirs(text, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create {what} {text}: a file of that name exists") from None
    except OSError as exc:
        raise OutputError(f"cannot create {what} {text}: {exc.strerror or exc}") from None


#: Names of an already open file descriptor: always streamed into (even when the
#: descriptor is a regular file, as in ``> out.npy``), never replaced by a rename.
_FD_ALIAS = re.compile(r"^/dev/(?:stdout|stderr|fd/\d+)$|^/proc/(?:self|thread-self|\d+)/fd/\d+$")


def is_stream_target(path: str | os.PathLike) -> bool:
    """True for ``-``, for the names of open descriptors (``/dev/stdout``, ``/dev/fd/N``,
    ``/proc/self/fd/N``) and for existing paths that are not regular files or folders
    (FIFOs, character devices, sockets): outputs that are streamed into, never replaced."""
    text = os.fspath(path)
    if text == "-":
        return True
    if _FD_ALIAS.match(text) and os.path.exists(text):
        return True
    try:
        st = os.stat(text)  # follows symlinks: /dev/stdout -> /proc/self/fd/1 -> pipe
    except OSError:
        return False
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def lock_file(fd: int, name: str) -> bool:
    """Take an exclusive, non-blocking ``flock`` on ``fd`` or raise OutputError. False on a
    filesystem without ``flock`` support (then there is no lock)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise OutputError(f"another pythia-data is writing {name}") from None
        return False  # filesystems without flock support (some network mounts)
    return True


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C (SIGINT) arriving inside the block is delivered when the block ends, so that
    the few steps that create or rename a file are never cut in the middle. Only in the
    main thread (elsewhere, and where the handler cannot be changed, a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):  # pragma: no cover
        previous = None
    if previous is None or previous == signal.SIG_IGN:
        yield
        return
    pending: list[int] = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    except (ValueError, OSError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, None)  # default_int_handler raises KeyboardInterrupt
            else:
                os.kill(os.getpid(), signal.SIGINT)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are the same existing file (through any symlink or hard
    link: same device and inode)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def refuse_overlap(outputs: Iterable[str | os.PathLike],
                   inputs: Iterable[str | os.PathLike]) -> None:
    """UsageError when an output is one of the inputs: the same file by device and inode,
    so a symlink or a hard link cannot make ``--force`` replace the data being read."""
    ins = [os.fspath(i) for i in inputs]
    for o in outputs:
        o = os.fspath(o)
        if o == "-":
            continue
        for i in ins:
            if same_file(o, i):
                how = "" if os.path.abspath(o) == os.path.abspath(i) else \
                    " (the same file through a link)"
                raise UsageError(f"output {o} is also the input {i}{how}: write the output "
                                 "elsewhere")


def lock_path(final: str | os.PathLike) -> str:
    """The lock file guarding the output ``final``: ``.NAME.pythia-lock`` beside it."""
    folder, name = os.path.split(os.fspath(final))
    return os.path.join(folder, f".{name}.pythia-lock")


#: outputs whose lock this process holds, by final path (see :func:`claim_outputs`)
_HELD: dict[str, OutputLock] = {}
#: outputs opened and not yet committed or aborted (see :func:`abort_all`)
_LIVE: set = set()
_REGISTRY = threading.Lock()


class OutputLock:
    """The exclusive lock on the output ``final`` (a regular file path, symlinks already
    resolved). Raises OutputError at once if another process holds it."""

    def __init__(self, final: str | os.PathLike):
        self.final = os.fspath(final)
        self.path = lock_path(self.final)
        self.fd: int | None = None
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(
            os, "O_NOFOLLOW", 0)
        for _ in range(100):
            try:
                fd = os.open(self.path, flags, 0o666)
            except OSError as exc:
                raise OutputError(
                    f"cannot write {self.final}: {exc.strerror or exc} ({self.path})") from None
            try:
                locked = lock_file(fd, self.final)
                if locked:
                    # the file we locked must still be the lock file (not one a finishing
                    # writer has just removed)
                    try:
                        current = os.stat(self.path, follow_symlinks=False)
                    except FileNotFoundError:
                        current = None
                    mine = os.fstat(fd)
                    if current is None or (current.st_dev, current.st_ino) != (
                            mine.st_dev, mine.st_ino):
                        os.close(fd)
                        continue
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return
        raise OutputError(f"cannot lock {self.final}: its lock file keeps changing")

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent; a Ctrl-C waits for both)."""
        if self.fd is None:
            return
        with interrupts_deferred():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _key(final: str) -> str:
    """One spelling per output file (``./x``, ``x`` and ``dir/../x`` alike; folders
    resolved), so a lock this process holds is found again."""
    folder, name = os.path.split(os.path.abspath(final))
    return os.path.join(os.path.realpath(folder), name)
def output_lock(final: str | os.PathLike) -> OutputLock | None:
    """The lock of the output ``final`` for a writer with its own protocol (unshard's
    resumable partial file): a new :class:`OutputLock` (release it when done), or None when
    this process already holds it (:func:`claim_outputs`)."""
    final = os.fspath(final)
    with _REGISTRY:
        if _key(final) in _HELD:
            return None
    return OutputLock(final)


def _final_path(path: str) -> str:
    return os.path.realpath(path) if os.path.islink(path) else path


@contextlib.contextmanager
def claim_outputs(paths: Iterable[str | os.PathLike]):
    """Hold the locks of these outputs for the duration of the block (a command takes them
    first, before its slow start-up, so a second run is refused at once). Outputs opened
    inside the block with the same final path use the lock held here. Streams (``-``,
    FIFOs, devices) and folders are skipped."""
    taken: list[OutputLock] = []
    try:
        with interrupts_deferred():
            for p in paths:
                text = os.fspath(p)
                if text == "-" or is_stream_target(text) or os.path.isdir(text):
                    continue
                final = _final_path(text)
                folder = os.path.dirname(final) or "."
                if not os.path.isdir(folder):
                    continue  # created (and locked) when the output is opened
                with _REGISTRY:
                    if _key(final) in _HELD:
                        continue
                lock = OutputLock(final)
                taken.append(lock)
                with _REGISTRY:
                    _HELD[_key(final)] = lock
        yield
    finally:
        # a Ctrl-C here (the outputs may be committed already) waits for the last lock file
        with interrupts_deferred():
            for lock in taken:
                with _REGISTRY:
                    _HELD.pop(_key(lock.final), None)
                lock.release()


def abort_all() -> int:
    """Abort every output this process opened and neither committed nor aborted (the CLI
    calls it when a command fails or is interrupted). Returns how many."""
    with _REGISTRY:
        live = list(_LIVE)
    for out in live:
        out.abort()
    return len(live)


class AtomicOutput:
    """One output: ``write`` bytes, then :meth:`commit` (or :meth:`abort`).

    ``path``: where the user asked the output to go (``-`` for ``stream``, by default
    stdout). ``overwrite=False`` refuses an existing regular file ("pass --force").
    ``follow_symlinks=False`` (cache folders) replaces an existing symlink itself instead
    of writing its target.
    ``make_folder`` creates a missing parent folder. As a context manager a clean exit
    commits and an exception aborts. ``fh`` is the binary file object being written
    (for ``sendfile``/``fileno`` users); ``streaming`` says whether it is a stream.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = True,
        stream: BinaryIO | None = None,
        make_folder: bool = True,
        follow_symlinks: bool = True,
    ):
        self.path = os.fspath(path)
        self.final: str | None = None
        self.partial: str | None = None
        self.hasher = None  # see :meth:`hash_as_written`
        self.written = 0
        self._done = False
        self._own_fh = False
        if self.path == "-":
            self.streaming = True
            self.fh = stream if stream is not None else sys.stdout.buffer
            return
        if os.path.isdir(self.path):
            raise OutputError(f"{self.path} is a folder, not a file")
        if is_stream_target(self.path) and (follow_symlinks or not os.path.islink(self.path)):
            self.streaming = True
            try:
                self.fh = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in commit
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            self._own_fh = True
            return
        self.streaming = False
        final = _final_path(self.path) if follow_symlinks else self.path
        if os.path.isdir(final):
            raise OutputError(f"{self.path} is a folder, not a file")
        folder = os.path.dirname(final) or "."
        if make_folder:
            ensure_folder(folder)
        elif not os.path.isdir(folder):
            raise OutputError(f"output folder {folder} does not exist")
        self.final = final
        self.partial = final + PARTIAL
        self._lock: OutputLock | None = None
        self._created = False
        try:
            with interrupts_deferred():
                self._open(overwrite)
        except BaseException:
            self._done = True
            self._cleanup()
            raise

    def _open(self, overwrite: bool) -> None:
        # the lock first: a second writer is refused before it creates or truncates anything
        with _REGISTRY:
            held = _HELD.get(_key(self.final))
        if held is None:
            self._lock = OutputLock(self.final)
        if not overwrite and os.path.lexists(self.final):
            raise OutputExistsError(self.path)
        # a stale partial file (a killed run's, or a planted symlink) is replaced, not followed
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NOFOLLOW", 0))
        try:
            fd = os.open(self.partial, flags, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial}: {exc.strerror or exc}") from None
        self._created = True
        self.fh = os.fdopen(fd, "wb")
        self._own_fh = True
        with _REGISTRY:
            _LIVE.add(self)

    def _cleanup(self) -> None:
        """Close, remove the partial file if this output made it, release its own lock."""
        fh = getattr(self, "fh", None)
        if fh is not None and self._own_fh:
            with contextlib.suppress(OSError):
                fh.close()
        if self._created:
            with contextlib.suppress(OSError):
                os.unlink(self.partial)
            self._created = False
        self._release()

    def _release(self) -> None:
        with _REGISTRY:
            _LIVE.discard(self)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- writing
    @property
    def name(self) -> str:
        """What error messages call this output."""
        return self.final or ("stdout" if self.path == "-" else self.path)

    def write(self, data) -> None:
        """Write all of ``data`` (bytes or any C-contiguous buffer, e.g. a numpy array:
        written without a copy). An unbuffered file may take part of a buffer per call
        (Linux writes at most 2 GiB - 4 KiB at once; a disk that fills up takes what
        fits): the rest is written by further calls, never dropped."""
        view = memoryview(data).cast("B")
        if self.hasher is not None:
            self.hasher.update(view)
            self.written += view.nbytes
        try:
            while view.nbytes:
                n = self.fh.write(view)
                if n is None or n >= view.nbytes:  # buffered streams take it all
                    break
                if n <= 0:
                    raise OutputError(f"cannot write {self.name}: the file took no bytes")
                view = view[n:]
        except BrokenPipeError:
            raise  # a closed pipe (| head): the CLI ends quietly
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None

    def hash_as_written(self, hasher) -> None:
        """Feed every byte :meth:`write` takes from now on to ``hasher`` (an object with
        ``update``, e.g. :func:`pythia_data.integrity.hashing.new_hasher`'s; ``written``
        counts them): the digest of the file written only through :meth:`write`, without
        reading it back."""
        self.hasher = hasher
        self.written = 0

    def flush(self) -> None:
        try:
            self.fh.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None

    # -- ending
    def commit(self, sync: bool = True) -> None:
        """Make the output final: flush (stream), or fsync + rename + fsync the folder."""
        if self._done:
            return
        self._done = True
        if self.final is None:
            try:
                self.flush()
            finally:
                if self._own_fh:
                    with contextlib.suppress(OSError):
                        self.fh.close()
            return
        try:
            with interrupts_deferred():
                self.fh.flush()
                if sync:
                    os.fsync(self.fh.fileno())
                self.fh.close()
                os.replace(self.partial, self.final)
                self._created = False
                if sync:
                    fsync_dir(os.path.dirname(self.final) or ".")
                self._release()
        except OSError as exc:
            self._cleanup()
            raise OutputError(f"cannot write {self.final}: {exc.strerror or exc}") from None
        except BaseException:
            self._cleanup()
            raise

    def abort(self) -> None:
        """Drop the output: the partial file is removed (a stream is left as it is)."""
        if self._done:
            return
        self._done = True
        if self.final is None:
            if self._own_fh:
                with contextlib.suppress(OSError):
                    self.fh.close()
            return
        with interrupts_deferred():
            self._cleanup()

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class AtomicGroup:
    """Several outputs that appear together (``PREFIX.bin`` + ``PREFIX.idx``): all are
    fsynced before the first rename; an abort removes every partial file."""

    def __init__(self, outputs: Iterable[AtomicOutput]):
        self.outputs = list(outputs)

    def commit(self, sync: bool = True) -> None:
        with interrupts_deferred():
            self._commit(sync)

    def _commit(self, sync: bool) -> None:
        bad = "output"
        try:
            if sync:
                for out in self.outputs:
                    if out.final is not None and not out._done:
                        bad = out.name
                        out.fh.flush()
                        os.fsync(out.fh.fileno())
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {bad}: {exc.strerror or exc}") from None
        except BaseException:
            self.abort()
            raise
        for i, out in enumerate(self.outputs):
            try:
                out.commit(sync=False)
            except BaseException:
                for rest in self.outputs[i + 1:]:
                    rest.abort()
                raise
        if sync:
            for folder in {os.path.dirname(o.final) or "." for o in self.outputs if o.final}:
                fsync_dir(folder)

    def abort(self) -> None:
        for out in self.outputs:
            out.abort()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` with the protocol above (or into a FIFO/device)."""
    with AtomicOutput(path, overwrite=overwrite) as out:
        out.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` with the protocol above."""
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
