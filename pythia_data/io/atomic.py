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
* the partial file is locked (``flock``) while it is written, so a second run writing the
  same output fails at once with "another pythia-data is writing FINAL" instead of both
  corrupting it; the lock dies with its process, so a stale ``.partial`` from a killed run
  is simply reused;
* every error names the file (``OutputError``, exit code 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
from collections.abc import Iterable
from typing import BinaryIO

from pythia_data.errors import OutputError, OutputExistsError

try:  # pragma: no cover - always present on Linux/macOS
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PARTIAL = ".partial"

__all__ = [
    "PARTIAL",
    "AtomicGroup",
    "AtomicOutput",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_folder",
    "fsync_dir",
    "is_stream_target",
    "lock_file",
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


def lock_file(fd: int, name: str) -> None:
    """Take an exclusive, non-blocking ``flock`` on ``fd`` or raise OutputError."""
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise OutputError(f"another pythia-data is writing {name}") from None
        # filesystems without flock support (some network mounts): go on without a lock


class AtomicOutput:
    """One output: ``write`` bytes, then :meth:`commit` (or :meth:`abort`).

    ``path``: where the user asked the output to go (``-`` for ``stream``, by default
    stdout). ``overwrite=False`` refuses an existing regular file ("pass --force").
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
    ):
        self.path = os.fspath(path)
        self.final: str | None = None
        self.partial: str | None = None
        self._done = False
        self._own_fh = False
        if self.path == "-":
            self.streaming = True
            self.fh = stream if stream is not None else sys.stdout.buffer
            return
        if os.path.isdir(self.path):
            raise OutputError(f"{self.path} is a folder, not a file")
        if is_stream_target(self.path):
            self.streaming = True
            try:
                self.fh = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in commit
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            self._own_fh = True
            return
        self.streaming = False
        final = os.path.realpath(self.path) if os.path.islink(self.path) else self.path
        if os.path.isdir(final):
            raise OutputError(f"{self.path} is a folder, not a file")
        if not overwrite and os.path.lexists(final):
            raise OutputExistsError(self.path)
        folder = os.path.dirname(final) or "."
        if make_folder:
            ensure_folder(folder)
        elif not os.path.isdir(folder):
            raise OutputError(f"output folder {folder} does not exist")
        self.final = final
        self.partial = final + PARTIAL
        try:
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                         0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial}: {exc.strerror or exc}") from None
        try:
            lock_file(fd, final)
            os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        self.fh = os.fdopen(fd, "wb")
        self._own_fh = True

    # -- writing
    @property
    def name(self) -> str:
        """What error messages call this output."""
        return self.final or ("stdout" if self.path == "-" else self.path)

    def write(self, data) -> None:
        try:
            self.fh.write(data)
        except BrokenPipeError:
            raise  # a closed pipe (| head): the CLI ends quietly
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None

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
            self.fh.flush()
            if sync:
                os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.partial, self.final)
        except OSError as exc:
            self._remove_partial()
            raise OutputError(f"cannot write {self.final}: {exc.strerror or exc}") from None
        except BaseException:
            self._remove_partial()
            raise
        if sync:
            fsync_dir(os.path.dirname(self.final) or ".")

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
        self._remove_partial()

    def _remove_partial(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(self.partial)

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
