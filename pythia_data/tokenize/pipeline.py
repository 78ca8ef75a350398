"""Text in, MMIDIDX datasets out (and back): GPT-NeoX's ``tools/preprocess_data.py`` loop.

Reading (:func:`read_documents`):

* ``.jsonl``: one JSON value per line (a UTF-8 byte-order mark at the start of the file, and
  one BOM or RS character at the start of any line, are skipped, as GPT-NeoX's ``jsonlines``
  reader does); an object's ``key`` (default ``"text"``) is the
  document; a list of strings there is joined with ``"\\n\\n"`` (lm_dataformat's
  paragraph join); a line that is a JSON string is the document itself; blank lines are
  skipped. ``.jsonl.zst`` the same through zstandard (optional extra ``zst``); a file that
  ends inside a compressed frame is an error (it was cut), not a shorter input.
* ``.txt``: the whole file is one document, with ``\\r\\n`` and lone ``\\r`` read as
  ``\\n`` (Python's text mode, which GPT-NeoX's reader uses).
* a folder: every ``.jsonl``, ``.jsonl.zst`` and ``.txt`` file below it, recursively, in
  sorted order of their paths relative to the folder (hidden files and other files are
  skipped); ``-``: JSON lines on standard input.
* invalid UTF-8 bytes, or a lone surrogate from a ``"\\ud800"`` escape: ``errors="strict"``
  raises :class:`~pythia_data.errors.InputError` naming ``FILE:LINE``; ``errors="replace"``
  substitutes U+FFFD (one per maximal invalid byte sequence, Python's ``"replace"``
  decoding; one per lone surrogate).
* a JSON line of at least 1 MiB whose document is a plain JSON string (the usual case) is
  read without Python strings: a kernel (:mod:`pythia_data.kernels.jsonl`) checks the line
  (UTF-8 and JSON) and unescapes the document straight into UTF-8 bytes, so a document's
  :attr:`Document.text` is then a ``bytearray`` of valid UTF-8 (a 200 MB line of CJK text
  would be a 700 MB ``str``); anything else goes through ``json.loads`` as above.
* :func:`read_batches` (what ``tokenize`` reads with) gives the same documents as
  :class:`TextBatch` es -- one UTF-8 buffer and offsets per batch -- read in blocks of lines
  by that kernel (:func:`~pythia_data.kernels.jsonl.jsonl_block`), no ``str`` per
  document; the lines it declines go through the per-line path above, in order, with its
  error messages and line numbers.

Writing (:func:`tokenize_documents`), byte for byte what ``preprocess_data.py`` writes with
the same tokenizer: empty documents are skipped (whitespace-only ones are kept; input with
no non-empty document gives an empty dataset and a warning in the summary), each
document becomes one sequence and one document (``doc_idx = 0..N``), ``append_eod`` adds the
tokenizer's ``eod_id``, tokens are ``tokenizer.dtype`` (uint16 below 65,500 ids). Documents
are read in bounded batches by a helper thread while the previous batch is tokenized (the
cpu backend tokenizes a batch on its own threads), so memory stays bounded and order is kept;
the first batch is small and each next one doubles, so encoding starts at once and a short
input (a work unit) is overlapped too.
Both files appear only when complete (:class:`~pythia_data.dataset.DatasetBuilder`); an
interrupted run leaves at most ``*.partial`` files, which a rerun overwrites.

:func:`detokenize` and :func:`retokenize` go the other way and across tokenizers.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from pythia_data.cancel import cancel_point
from pythia_data.dataset import DatasetBuilder, IndexedDataset
from pythia_data.errors import InputError, UsageError
from pythia_data.format.header import strip_suffix
from pythia_data.integrity.hashing import new_hasher
from pythia_data.io.atomic import AtomicOutput, refuse_overlap
from pythia_data.io.walk import walk_files
from pythia_data.tokenize.base import _check_errors, clean_text

__all__ = [
    "INPUT_SUFFIXES",
    "Document",
    "TextBatch",
    "dataset_documents",
    "detokenize",
    "expand_inputs",
    "output_prefix",
    "read_batches",
    "read_documents",
    "retokenize",
    "tokenize_documents",
    "tokenize_files",
]

INPUT_SUFFIXES = (".jsonl.zst", ".jsonl", ".txt")
BATCH_DOCUMENTS = 4096
BATCH_CHARS = 16 << 20

#: ``progress(n)`` after each batch: the package's ``update`` (:mod:`pythia_data.progress`);
#: ``n`` is UTF-8 bytes of text encoded (tokenize), bytes written (detokenize) or bytes of
#: tokens read (retokenize).
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Document:
    """One document and where it came from (``line`` is 1-based; 1 for a ``.txt`` file).
    ``text`` is a ``str``, or a ``bytearray`` of valid UTF-8 for a very long JSON line (see
    the module docstring); every tokenizer backend takes either."""

    text: str | bytearray
    source: str
    line: int


# --------------------------------------------------------------------------- reading


def _has_suffix(name: str) -> bool:
    return name.endswith(INPUT_SUFFIXES)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """The files to read, in order: folders expanded (see the module docstring)."""
    out: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        if text == "-":
            out.append(text)
        elif os.path.isdir(text):
            found = [os.fspath(p) for p in walk_files(text) if _has_suffix(p.name)]
            if not found:
                raise InputError(
                    f"{text}: folder holds no {', '.join(INPUT_SUFFIXES)} files")
            out.extend(found)
        elif os.path.exists(text):
            if not _has_suffix(text):
                raise InputError(
                    f"{text}: unknown input type (give {', '.join(INPUT_SUFFIXES)} files, a "
                    "folder of them, or - for JSON lines on stdin)")
            mode = os.stat(text).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                # a link to /dev/zero or /dev/urandom would be read without end
                raise InputError(f"{text}: not a regular file (nor a pipe)")
            out.append(text)
        else:
            raise InputError(f"{text}: no such file or folder")
    if not out:
        raise UsageError("no input given")
    return out


def _decode(raw: bytes, name: str, line: int, errors: str, whole_file: bool = False) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if errors == "replace":
            return raw.decode("utf-8", errors="replace")
        if whole_file:
            line += raw.count(b"\n", 0, exc.start)
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1)
        else:
            column = exc.start
        raise InputError(
            f"{name}:{line}: invalid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {column + 1} "
            "of the line); --errors replace substitutes U+FFFD"
        ) from None


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of a ``.zst`` file, frame after frame. Unlike zstandard's
    ``stream_reader``, a file that ends inside a frame (cut at a block boundary) is an error,
    not a silent end of the data; a corrupt frame is an error naming the file."""

    CHUNK = 1 << 16

    def __init__(self, fh, name: str, zstandard):
        super().__init__()
        self._fh = fh
        self._name = name
        self._zstd = zstandard
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = None  # the frame being decompressed (None between frames)
        self._pending = b""  # compressed bytes not yet fed
        self._out = b""  # decompressed bytes not yet read, from self._at
        self._at = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._at >= len(self._out) and not self._done:
            data = self._pending or self._fh.read(self.CHUNK)
            self._pending = b""
            if not data:
                if self._dobj is not None:
                    raise InputError(
                        f"{self._name}: truncated .zst file (it ends inside a compressed "
                        "frame; the file is incomplete)")
                self._done = True
                return
            if self._dobj is None:
                self._dobj = self._dctx.decompressobj()
            try:
                self._out, self._at = self._dobj.decompress(data), 0
            except self._zstd.ZstdError as exc:
                raise InputError(f"{self._name}: not a valid .zst file ({exc})") from None
            if self._dobj.eof:
                self._pending = self._dobj.unused_data
                self._dobj = None

    def readinto(self, buffer) -> int:
        self._fill()
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = memoryview(self._out)[self._at : self._at + n]
        self._at += n
        return n


@contextlib.contextmanager
def _open_binary(path: str, stdin=None):
    if path == "-":
        yield stdin if stdin is not None else sys.stdin.buffer
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if path.endswith(".zst"):
            try:
                import zstandard
            except ImportError:
                raise UsageError(
                    f"{path}: reading .zst needs zstandard (pip install 'pythia-data[zst]')"
                ) from None
            yield io.BufferedReader(_ZstdFrames(fh, path, zstandard), buffer_size=1 << 20)
        else:
            yield fh
    finally:
        fh.close()


_BOM = b"\xef\xbb\xbf"
#: GPT-NeoX reads JSON lines with ``jsonlines``, which skips one of these at a line's start
_SKIPPED_FIRST_CHARS = ("\ufeff", "\x1e")


#: JSON lines at least this long are read by the kernel (no Python strings)
BIG_LINE = 1 << 20


def _big_line_text(raw: bytes, key: bytes) -> bytearray | None:
    """The document of a long JSON line as UTF-8 bytes, or None (then ``json.loads``)."""
    from pythia_data.kernels.jsonl import json_text_utf8

    out = bytearray(len(raw))
    n = json_text_utf8(np.frombuffer(raw, dtype=np.uint8), np.frombuffer(key, dtype=np.uint8),
                       np.frombuffer(out, dtype=np.uint8))
    if n < 0:
        return None
    del out[n:]
    return out


def _line_document(raw: bytes, name: str, lineno: int, key: str, key_utf8: bytes,
                   errors: str, strip_bom: bool) -> str | bytearray | None:
    """The document of one JSON line (None for a blank line), or InputError naming
    ``name:lineno``. ``strip_bom``: the line starts a (not compressed) file."""
    if strip_bom and raw.startswith(_BOM):
        raw = raw[len(_BOM):]  # jsonlines opens a .jsonl as "utf-8-sig"
    if len(raw) >= BIG_LINE:
        text = _big_line_text(raw, key_utf8)
        if text is not None:
            return text
    if not raw.strip():
        return None
    line = _decode(raw, name, lineno, errors)
    if line.startswith(_SKIPPED_FIRST_CHARS):
        line = line[1:]  # jsonlines skips one BOM or RS at the start of any line
    try:
        value = json.loads(line)
    except ValueError as exc:
        # json's own message may end in "at" ("Invalid control character at")
        msg = getattr(exc, "msg", str(exc)).removesuffix(" at")
        pos = getattr(exc, "pos", None)  # characters into the line, 0-based
        where = f" at character {pos + 1}" if pos is not None else ""
        raise InputError(f"{name}:{lineno}: not valid JSON ({msg}{where})") from None
    except RecursionError:
        raise InputError(
            f"{name}:{lineno}: not valid JSON (nested too deeply to read)") from None
    if isinstance(value, dict):
        if key not in value:
            raise InputError(f"{name}:{lineno}: no key {key!r} in the JSON object")
        text = value[key]
    elif isinstance(value, str):
        text = value
    else:
        raise InputError(
            f"{name}:{lineno}: expected a JSON object or string, got "
            f"{type(value).__name__}")
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        text = "\n\n".join(text)
    if not isinstance(text, str):
        raise InputError(
            f"{name}:{lineno}: {key!r} is a {type(text).__name__}, not a string "
            "(or a list of strings)")
    return clean_text(text, f"{name}:{lineno}", errors)


def _jsonl(fh, name: str, key: str, errors: str, zst: bool = False,
           file_start: bool = True) -> Iterator[Document]:
    lineno = 0
    key_utf8 = key.encode("utf-8", "surrogatepass")
    try:
        for raw in fh:
            lineno += 1
            text = _line_document(raw, name, lineno, key, key_utf8, errors,
                                  lineno == 1 and file_start and not zst)
            del raw  # only the document's bytes stay while it is tokenized
            if text is not None:
                yield Document(text, name, lineno)
    except OSError as exc:  # e.g. a corrupt .zst frame
        raise InputError(f"{name}:{lineno + 1}: cannot read ({exc})") from None


def jsonl_documents(fh, name: str, key: str = "text", errors: str = "strict", *,
                    file_start: bool = True) -> Iterator[Document]:
    """The documents of the JSON lines read from the binary line iterator ``fh`` (a whole
    file, or a slice of one starting at a line boundary: ``file_start=False`` when the
    slice does not start the file). Line numbers count from the slice's first line."""
    return _jsonl(fh, name, key, _check_errors(errors), file_start=file_start)


def read_documents(inputs: Iterable[str | os.PathLike], *, key: str = "text",
                   errors: str = "strict", stdin=None) -> Iterator[Document]:
    """Every document of ``inputs`` in order, empty ones included (see the module docstring).

    ``stdin`` is the binary stream ``-`` reads (default ``sys.stdin.buffer``)."""
    errors = _check_errors(errors)
    for path in expand_inputs(inputs):
        name = "<stdin>" if path == "-" else path
        if path.endswith(".txt"):
            with _open_binary(path) as fh:
                try:
                    raw = fh.read()
                except OSError as exc:
                    raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
            text = _decode(raw, name, 1, errors, whole_file=True)
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            yield Document(text, name, 1)
        else:
            with _open_binary(path, stdin) as fh:
                yield from _jsonl(fh, name, key, errors, zst=path.endswith(".zst"))


#: The first batch of a run is this fraction of the full size; each next one doubles.
RAMP = 64


# --------------------------------------------------------------------------- reading in batches


@dataclass(frozen=True)
class TextBatch:
    """Documents as one buffer of UTF-8: document ``i`` is ``data[offsets[i]:offsets[i +
    1]]`` (``offsets`` int64, ``offsets[0] == 0``, ``offsets[-1] == data.size``)."""

    data: np.ndarray
    offsets: np.ndarray

    @property
    def documents(self) -> int:
        return self.offsets.size - 1

    @classmethod
    def of_texts(cls, texts: Sequence[str | bytearray]) -> TextBatch:
        """Texts already cleaned (no lone surrogates) or ``bytearray`` UTF-8."""
        parts = [t if isinstance(t, bytearray) else t.encode("utf-8") for t in texts]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in parts], out=offsets[1:])
        return cls(np.frombuffer(b"".join(parts), dtype=np.uint8), offsets)

    @classmethod
    def join(cls, batches: Sequence[TextBatch]) -> TextBatch:
        if len(batches) == 1:
            return batches[0]
        bases = np.cumsum([0] + [int(b.data.size) for b in batches[:-1]])
        offsets = np.concatenate([batches[0].offsets[:1]] + [
            b.offsets[1:] + base for b, base in zip(batches, bases)])
        return cls(np.concatenate([b.data for b in batches]), offsets)


class _Ramp:
    """The batch limits (documents, input bytes): ``1/ramp`` of the full ones at first,
    twice the last after each batch (see :func:`_batches`).

    With ``total`` (the input's size when it is known: a work unit's byte range), the
    byte limit also ramps down towards the end: at most half of the input not yet read
    (:meth:`consumed` counts it), and not under the first size, so that the last batch is
    a small one. The writer thread writes batch k while batch k + 1 is encoded, but the
    last batch's write is waited for at the end of the input; with a doubling ramp alone
    the last batch of a 16 MiB unit was its biggest (~4 ms of every unit spent waiting
    for it, 0.26 s of 15 at 1 GB)."""

    def __init__(self, max_docs: int, max_bytes: int, ramp: int | None = None,
                 total: int | None = None):
        ramp = max(RAMP if ramp is None else ramp, 1)
        self.max_docs, self.max_bytes = max(1, max_docs), max(1, max_bytes)
        self.docs = max(1, self.max_docs // ramp)
        self._up = self._floor = max(1, self.max_bytes // ramp)
        self._left = total

    @property
    def bytes(self) -> int:
        if self._left is None:
            return self._up
        return min(self._up, max(self._floor, self._left // 2))

    def step(self) -> None:
        """After a batch was handed on."""
        self.docs = min(self.max_docs, 2 * self.docs)
        self._up = min(self.max_bytes, 2 * self._up)

    def consumed(self, n: int) -> None:
        """``n`` more bytes of the input were read (and cut into lines)."""
        if self._left is not None:
            self._left -= n


#: JSON lines are read in blocks of at least this many bytes (cut at line ends)
_MIN_BLOCK = 1 << 16


def _read_block(fh, buf: np.ndarray, have: int, need: int):
    """Fill ``buf[have:need]`` from ``fh``: (bytes held, end of input reached, the read's
    exception or None). One raw read a call (``readinto1``), so that the bytes read before
    a failing read are kept: their lines come before the error, as line by line."""
    view = memoryview(buf)
    readinto = getattr(fh, "readinto1", None) or fh.readinto
    while have < need:
        try:
            n = readinto(view[have:need])
        except (OSError, InputError) as exc:
            return have, False, exc
        if not n:
            return have, True, None
        have += n
    return have, False, None


def _jsonl_batches(fh, name: str, key: str, errors: str, ramp: _Ramp, *, zst: bool = False,
                   file_start: bool = True) -> Iterator[TextBatch]:
    """The documents of the JSON lines of ``fh`` (binary, with ``readinto``) in batches:
    the same documents, errors and line numbers as :func:`_jsonl`. Blocks of lines go
    through :func:`~pythia_data.kernels.jsonl.jsonl_block` (no Python object per line);
    the lines it does not take, through :func:`_line_document`, in order."""
    from pythia_data.kernels.jsonl import last_byte

    key_utf8 = key.encode("utf-8", "surrogatepass")
    key_arr = np.frombuffer(key_utf8, dtype=np.uint8)
    buf = np.empty(0, dtype=np.uint8)
    have = lineno = 0
    need = max(ramp.bytes, _MIN_BLOCK)
    while True:
        if buf.size < need:
            grown = np.empty(need, dtype=np.uint8)
            grown[:have] = buf[:have]
            buf = grown
        have, eof, failure = _read_block(fh, buf, have, need)
        if eof:
            cut = have
        else:
            cut = last_byte(buf, 0, have, 10) + 1
            if cut == 0 and failure is None:
                need *= 2  # a line longer than the block
                continue
        ramp.consumed(cut)
        pos = 0
        batches: list[TextBatch] = []
        try:
            while pos < cut:
                batch, pos, done = _block_batch(buf, pos, cut, key_arr, ramp.docs, name,
                                                lineno, key, key_utf8, errors,
                                                file_start and not zst and lineno == 0)
                lineno += done
                if batch is not None:
                    batches.append(batch)
        except InputError as exc:  # after the documents of the lines before it
            failure = exc
        if failure is None and not eof:
            rest = have - cut
            buf[:rest] = buf[cut:have]
            have = rest
            need = max(ramp.bytes, _MIN_BLOCK, 2 * have)
            if buf.size > 4 * need:  # after a very long line: its buffer goes first
                buf = buf[:have].copy()
        else:
            buf = None
        while batches:
            yield batches.pop(0)
        if buf is not None:
            # the next block at the limits as they are now, after the consumer stepped
            # them for the batches just handed on (sized before, each block's batch was
            # under half the next limit, and _coalesced joined every two: a copy of all
            # the text, in fresh memory)
            need = max(ramp.bytes, _MIN_BLOCK, 2 * have)
        if failure is not None:
            if isinstance(failure, InputError):
                raise failure
            raise InputError(f"{name}:{lineno + 1}: cannot read ({failure})") from None
        if eof:
            return


def _block_batch(buf: np.ndarray, pos: int, cut: int, key_arr: np.ndarray, max_docs: int,
                 name: str, lineno: int, key: str, key_utf8: bytes, errors: str,
                 strip_bom: bool) -> tuple[TextBatch | None, int, int]:
    """The documents of up to ``max_docs`` lines of ``buf[pos:cut]`` (whole lines; the
    first is line ``lineno + 1``): (the batch or None when it has no document, the
    position after those lines, how many lines)."""
    from pythia_data.kernels.jsonl import jsonl_block

    out = np.empty(cut - pos, dtype=np.uint8)
    cap = max(1, min(max_docs, cut - pos))
    doc_off = np.empty(cap + 1, dtype=np.int64)
    line_end = np.empty(cap, dtype=np.int64)
    taken = np.empty(cap, dtype=np.uint8)
    n, end, w = jsonl_block(buf, pos, cut, key_arr, out, 0, doc_off, line_end, taken)
    doc_off = doc_off[: n + 1]
    if w < out.size // 2:
        out = out[:w].copy()  # the batch does not hold the block's whole room
    bad = np.flatnonzero(taken[:n] == 0)
    if bad.size == 0:
        return TextBatch(out[:w], doc_off), end, n
    # lines the kernel did not take: the per-line path, in order, with its messages
    datas, offs = [], [np.zeros(1, dtype=np.int64)]
    base = prev = 0
    for i in bad.tolist():
        if i > prev:
            datas.append(out[doc_off[prev] : doc_off[i]])
            offs.append(doc_off[prev + 1 : i + 1] - doc_off[prev] + base)
            base += int(doc_off[i] - doc_off[prev])
        start = pos if i == 0 else int(line_end[i - 1])
        raw = buf[start : int(line_end[i])].tobytes()
        text = _line_document(raw, name, lineno + i + 1, key, key_utf8, errors,
                              strip_bom and i == 0)
        del raw
        if text is not None:
            data = np.frombuffer(text if isinstance(text, bytearray) else
                                 text.encode("utf-8"), dtype=np.uint8)
            datas.append(data)
            base += data.size
            offs.append(np.array([base], dtype=np.int64))
        prev = i + 1
    if prev < n:
        datas.append(out[doc_off[prev] : doc_off[n]])
        offs.append(doc_off[prev + 1 : n + 1] - doc_off[prev] + base)
    offsets = np.concatenate(offs)
    if offsets.size == 1:
        return None, end, n
    data = np.concatenate(datas) if datas else np.zeros(0, dtype=np.uint8)
    return TextBatch(data, offsets), end, n


def read_jsonl_batches(fh, name: str, key: str = "text", errors: str = "strict", *,
                       file_start: bool = True, batch_documents: int = BATCH_DOCUMENTS,
                       batch_chars: int = BATCH_CHARS, ramp: int | None = None,
                       size: int | None = None) -> Iterator[TextBatch]:
    """:func:`jsonl_documents` of the binary stream ``fh`` as :class:`TextBatch` es (see
    :func:`read_batches`); ``size``, the stream's length when known, makes the last
    batches small (see :class:`_Ramp`)."""
    limits = _Ramp(batch_documents, batch_chars, ramp, size)
    return _coalesced(_jsonl_batches(fh, name, key, _check_errors(errors), limits,
                                     file_start=file_start), limits)


def read_batches(inputs: Iterable[str | os.PathLike], *, key: str = "text",
                 errors: str = "strict", stdin=None, batch_documents: int = BATCH_DOCUMENTS,
                 batch_chars: int = BATCH_CHARS,
                 ramp: int | None = None) -> Iterator[TextBatch]:
    """The documents :func:`read_documents` reads, as :class:`TextBatch` es of at most
    ``batch_documents`` documents or ``batch_chars`` bytes of input (the first ones
    smaller, see :func:`_batches`); batching never changes the documents."""
    errors = _check_errors(errors)
    limits = _Ramp(batch_documents, batch_chars, ramp)
    return _coalesced(_file_batches(expand_inputs(inputs), key, errors, stdin, limits),
                      limits)


def _file_batches(paths: Sequence[str], key: str, errors: str, stdin,
                  limits: _Ramp) -> Iterator[TextBatch]:
    for path in paths:
        if path.endswith(".txt"):
            doc = next(read_documents([path], key=key, errors=errors))
            yield TextBatch.of_texts([doc.text])
            del doc
        else:
            name = "<stdin>" if path == "-" else path
            with _open_binary(path, stdin) as fh:
                yield from _jsonl_batches(fh, name, key, errors, limits,
                                          zst=path.endswith(".zst"))


def _coalesced(batches: Iterable[TextBatch], limits: _Ramp) -> Iterator[TextBatch]:
    """``batches`` with runs of small ones (the ends of files) joined, up to ``limits``,
    which step after each batch handed on."""
    pending: list[TextBatch] = []
    docs = size = 0
    for batch in batches:
        if not pending and (batch.documents >= limits.docs
                            or batch.data.size >= limits.bytes // 2):
            yield batch
            limits.step()
            continue
        pending.append(batch)
        docs += batch.documents
        size += batch.data.size
        if docs >= limits.docs or size >= limits.bytes // 2:
            yield TextBatch.join(pending)
            limits.step()
            pending, docs, size = [], 0, 0
    if pending:
        yield TextBatch.join(pending)


def _batches(documents: Iterable, max_docs: int, max_chars: int,
             ramp: int | None = None) -> Iterator[list]:
    """``documents`` in lists of at most ``max_docs`` documents or ``max_chars``
    characters (a list ends with the document that reaches either). The first list is
    ``1/ramp`` of those limits and each next one twice the last, up to the limits: the
    encoder waits only for a small first batch while the reader thread reads the next,
    bigger one (a 16 MiB work unit would otherwise be one batch, read then encoded, with
    nothing overlapped). Batching never changes the output."""
    ramp = max(RAMP if ramp is None else ramp, 1)
    docs_limit = max(1, max_docs // ramp)
    chars_limit = max(1, max_chars // ramp)
    batch, chars = [], 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc.text if isinstance(doc, Document) else doc)
        if len(batch) >= docs_limit or chars >= chars_limit:
            yield batch
            batch, chars = [], 0
            docs_limit = min(max_docs, 2 * docs_limit)
            chars_limit = min(max_chars, 2 * chars_limit)
    if batch:
        yield batch


_END = object()


def _prefetched(iterator: Iterator, depth: int = 2) -> Iterator:
    """Items of ``iterator`` produced by a helper thread, at most ``depth`` ahead; an
    exception there is raised here; leaving early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in iterator:
                if not put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
            return
        put((True, _END))

    thread = threading.Thread(target=run, name="pythia-data-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- writing


class _WriteBehind:
    """``fn(item)`` for each item :meth:`put`, on one thread behind the caller: the dataset
    writes of batch k (the page-cache copy, ~50 ms for 48 MB of text) overlap the encoding
    of batch k + 1. At most one item waits; an error there is raised by the next
    :meth:`put` or by :meth:`close`."""

    def __init__(self, fn: Callable):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=1)
        self._exc: BaseException | None = None
        self._dropped = False
        self._thread = threading.Thread(target=self._run, name="pythia-data-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._exc is None and not self._dropped:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - raised by put/close
                    self._exc = exc

    def put(self, item) -> None:
        if self._exc is not None:
            raise self._exc
        self._q.put(item)

    def close(self) -> None:
        """Wait for every write; raise the first error."""
        self._q.put(_END)
        self._thread.join()
        if self._exc is not None:
            raise self._exc

    def abort(self) -> None:
        """Drop the items not started, wait for the write in progress (the caller then
        removes the output)."""
        self._dropped = True
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()
        self._q.put(_END)
        self._thread.join(timeout=60)


def output_prefix(prefix: str | os.PathLike, key: str = "text") -> str:
    """GPT-NeoX's output name: ``PREFIX_{key}_document`` (a ``PREFIX`` that already ends
    in ``_{key}_document`` is kept as it is, not doubled)."""
    text = os.fspath(prefix)
    suffix = f"_{key}_document"
    return text if text.endswith(suffix) else text + suffix


def _as_stored(ids: np.ndarray, offsets: np.ndarray, dtype: np.dtype,
               eod: int | None, ended: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids and document offsets as a dataset stores them: ``dtype``, ``eod`` after
    every document (only those where the bool array ``ended`` is True, when given) unless
    it is None; returns (ids, lengths)."""
    ids = ids.astype(dtype, copy=False)  # the int32 ids are freed by the caller
    lengths = np.diff(offsets)
    if eod is not None:
        ends = offsets[1:] if ended is None else offsets[1:][ended]
        ids = np.insert(ids, ends, np.asarray(eod, dtype=ids.dtype))
        lengths = lengths + (1 if ended is None else ended)
    return ids, lengths


def _write_batch(builder: DatasetBuilder, ids: np.ndarray, lengths: np.ndarray) -> int:
    n = lengths.size
    if n and int(lengths.min()) == 0:
        # preprocess_data.py ends a document without adding a sequence when the tokenizer
        # returns nothing (not possible for byte-level BPE; other normalizers may strip)
        pos = 0
        for length in lengths.tolist():
            if length:
                builder.add_item(ids[pos : pos + length])
            builder.end_document()
            pos += length
    else:
        builder.add_documents(ids, lengths)
    return int(ids.size)


def _encode_utf8(tokenizer, data: np.ndarray, offsets: np.ndarray):
    """``tokenizer.encode_flat`` of documents already in (valid) UTF-8."""
    if tokenizer.backend == "cpu":
        return tokenizer.encode_utf8_flat(data, offsets, checked=False)
    if hasattr(tokenizer, "encode_utf8_flat"):
        return tokenizer.encode_utf8_flat(data, offsets)
    raw = data.tobytes()
    bounds = offsets.tolist()
    return tokenizer.encode_flat([raw[a:b].decode("utf-8")
                                  for a, b in zip(bounds[:-1], bounds[1:])])


def _encode_stored(tokenizer, data: np.ndarray, offsets: np.ndarray, dtype: np.dtype,
                   eod: int | None, out: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The ids of documents in (valid) UTF-8 as a dataset stores them (see
    :func:`_as_stored`), their lengths, and the buffer that holds the ids when it may be
    reused once they are written (None: do not). The cpu engine writes them so in one
    pass, into ``out`` when it has room."""
    if tokenizer.backend == "cpu":
        ids, lengths = tokenizer.encode_utf8_documents(data, offsets, dtype=dtype, eod=eod,
                                                       checked=False, out=out)
        return ids, lengths, (ids if ids.base is None else ids.base)
    ids, offsets = _encode_utf8(tokenizer, data, offsets)
    return (*_as_stored(ids, offsets, dtype, eod), None)


def _as_batches(documents: Iterable, batch_documents: int, batch_chars: int
                ) -> Iterator[TextBatch | list]:
    """``documents`` as they are when they are :class:`TextBatch` es, else in lists
    (:func:`_batches`)."""
    documents = iter(documents)
    first = next(documents, None)
    if first is None:
        return
    source = itertools.chain([first], documents)
    if not isinstance(first, TextBatch):
        source = _batches(source, batch_documents, batch_chars)
    yield from source


def write_part(documents: Iterable, tokenizer, prefix: str, *, append_eod: bool = False,
               overwrite: bool = True, durable: bool = True,
               progress: Progress | None = None, batch_documents: int = BATCH_DOCUMENTS,
               batch_chars: int = BATCH_CHARS, digests: dict | None = None) -> dict:
    """Encode ``documents`` and write them as the dataset ``prefix``: one document and one
    sequence each, empty ones skipped (as ``preprocess_data.py``), an empty dataset when
    none is left. The seam between reading documents and the writers: the whole input of
    one process, or one work unit's part (``durable=False``: not fsynced). ``documents``:
    :class:`Document` objects or strings, or :class:`TextBatch` es (:func:`read_batches`;
    then the batch limits are theirs). Returns the counts ``documents``,
    ``skipped_empty``, ``tokens``, ``input_bytes``. ``digests``, a dict, receives the
    xxh3 of the two files as they were written (:meth:`DatasetBuilder.digests`)."""
    eod = tokenizer.eod_id if append_eod else None
    dtype = np.dtype(tokenizer.dtype)
    docs = skipped = tokens = nbytes = 0
    with DatasetBuilder(prefix, dtype, overwrite=overwrite, durable=durable,
                        new_hasher=None if digests is None else partial(new_hasher, "xxh3")
                        ) as builder:
        # the first batch is read on the reader thread too: the encoder's wait for it is
        # all that is serial at the start (a work unit's first block, 1/64 of a batch)
        batches = _prefetched(_as_batches(documents, batch_documents, batch_chars))
        # id buffers the writer is done with, reused for later batches (fresh memory is
        # page-faulted in, at times with a huge-page compaction: ~30-50 ms a 16 MB batch);
        # at most three are in flight (being filled, waiting, being written)
        free: queue.SimpleQueue = queue.SimpleQueue()

        def write(item) -> None:
            ids, lengths, buffer = item
            _write_batch(builder, ids, lengths)
            if buffer is not None:
                free.put(buffer)

        behind = _WriteBehind(write)
        try:
            for batch in batches:
                cancel_point()  # a unit in a worker thread of a stopped run ends here
                size = n_kept = 0
                if isinstance(batch, TextBatch):
                    data, offsets = batch.data, batch.offsets
                    n_texts = offsets.size - 1
                    keep = np.diff(offsets) > 0
                    n_kept = int(np.count_nonzero(keep))
                    if n_kept < n_texts:
                        offsets = np.concatenate([offsets[:1], offsets[1:][keep]])
                    batch = None
                    buffer = None
                    if n_kept:
                        size = int(offsets[-1])
                        with contextlib.suppress(queue.Empty):
                            buffer = free.get_nowait()
                        ids, lengths, buffer = _encode_stored(tokenizer, data, offsets, dtype,
                                                              eod, buffer)
                    data = None
                else:
                    texts = [d.text if isinstance(d, Document) else d for d in batch]
                    n_texts = len(texts)
                    kept = [t for t in texts if t]
                    batch = texts = None  # a huge document is held by ``kept`` alone
                    n_kept = len(kept)
                    if kept:
                        size = sum(len(t) if not isinstance(t, str) else
                                   len(t.encode("utf-8", errors="surrogatepass"))
                                   for t in kept)
                        ids, offsets = tokenizer.encode_flat(kept)
                        ids, lengths = _as_stored(ids, offsets, dtype, eod)
                    buffer = kept = None
                skipped += n_texts - n_kept
                if n_kept:
                    tokens += int(ids.size)
                    behind.put((ids, lengths, buffer))
                    ids = lengths = buffer = None
                docs += n_kept
                nbytes += size
                if progress is not None:
                    progress(size)
            behind.close()
        except BaseException:
            behind.abort()
            raise
        finally:
            batches.close()
    if digests is not None:
        digests.update(builder.digests())
    return {"documents": docs, "skipped_empty": skipped, "tokens": tokens,
            "input_bytes": nbytes}


def tokenize_documents(documents: Iterable, tokenizer, prefix: str | os.PathLike, *,
                       append_eod: bool = False, overwrite: bool = True,
                       progress: Progress | None = None,
                       batch_documents: int = BATCH_DOCUMENTS,
                       batch_chars: int = BATCH_CHARS) -> dict:
    """Tokenize ``documents`` (:class:`Document` objects or plain strings) into the dataset
    ``prefix`` (``.bin``/``.idx``). Returns a summary dict."""
    prefix = strip_suffix(prefix)
    eod = tokenizer.eod_id if append_eod else None
    dtype = np.dtype(tokenizer.dtype)
    started = time.monotonic()
    counts = write_part(documents, tokenizer, prefix, append_eod=append_eod,
                        overwrite=overwrite, progress=progress,
                        batch_documents=batch_documents, batch_chars=batch_chars)
    docs, skipped = counts["documents"], counts["skipped_empty"]
    tokens, nbytes = counts["tokens"], counts["input_bytes"]
    warnings = []
    if docs == 0:
        # preprocess_data.py writes an empty dataset (a 42-byte .idx, a 0-byte .bin)
        warnings.append(
            "no documents in the input" + (f" ({skipped:,} empty skipped)" if skipped else "")
            + f"; wrote an empty dataset {prefix}")
    seconds = time.monotonic() - started
    return {
        "warnings": warnings,
        "output": prefix,
        "documents": docs,
        "skipped_empty": skipped,
        "tokens": tokens,
        "input_bytes": nbytes,
        "dtype": dtype.name,
        "eod": eod,
        "tokenizer": tokenizer.name,
        "backend": tokenizer.backend,
        "seconds": round(seconds, 3),
    }


def tokenize_files(inputs, prefix: str | os.PathLike, tokenizer, *, key: str = "text",
                   append_eod: bool = False, errors: str = "strict", overwrite: bool = True,
                   stdin=None, progress: Progress | None = None, **kwargs) -> dict:
    """``pythia-data tokenize``: read ``inputs`` (files, folders, ``-``) and write
    ``PREFIX_{key}_document.bin/.idx``, as ``preprocess_data.py`` names them."""
    files = expand_inputs(inputs)  # fail on a bad input before creating any output
    _check_errors(errors)
    out = output_prefix(prefix, key)
    refuse_overlap([out + ".bin", out + ".idx"], [f for f in files if f != "-"])
    batches = read_batches(files, key=key, errors=errors, stdin=stdin, **kwargs)
    summary = tokenize_documents(batches, tokenizer, out, append_eod=append_eod,
                                 overwrite=overwrite, progress=progress)
    summary["inputs"] = len(files)
    return summary


# --------------------------------------------------------------------------- reading back


def dataset_documents(ds: IndexedDataset, batch_documents: int = 1024,
                      max_tokens: int = 1 << 22, start: int = 0,
                      stop: int | None = None) -> Iterator[list[np.ndarray | None]]:
    """Batches of documents ``start..stop`` of ``ds`` (default all): each document's tokens
    (its sequences concatenated), or None for a document without any sequence. Memory
    bounded by ``max_tokens`` per batch (one document larger than that is its own batch)."""
    doc_idx = ds.doc_idx
    sizes = ds.sizes
    starts = ds.pointers
    itemsize = ds.dtype.itemsize
    n = ds.num_documents if stop is None else min(int(stop), ds.num_documents)
    d = max(int(start), 0)
    while d < n:
        e = min(d + batch_documents, n)
        s0, s1 = int(doc_idx[d]), int(doc_idx[e])
        lens = np.asarray(sizes[s0:s1], dtype=np.int64)
        if lens.sum() > max_tokens and e - d > 1:
            # shrink to the documents that fit (at least one)
            cum = np.cumsum(lens)
            seq_fit = int(np.searchsorted(cum, max_tokens, side="right"))
            fit = int(np.searchsorted(np.asarray(doc_idx[d:e + 1], dtype=np.int64),
                                      s0 + seq_fit, side="right")) - 1
            e = d + max(fit, 1)
            s1 = int(doc_idx[e])
            lens = lens[: s1 - s0]
        flat = ds.gather(np.asarray(starts[s0:s1], dtype=np.int64) // itemsize, lens)
        seq_ends = np.concatenate([[0], np.cumsum(lens)])
        out: list[np.ndarray | None] = []
        for k in range(d, e):
            a, b = int(doc_idx[k]) - s0, int(doc_idx[k + 1]) - s0
            out.append(None if a == b else flat[seq_ends[a] : seq_ends[b]])
        yield out
        d = e


def _body(doc: np.ndarray | None, eod: int | None) -> tuple[np.ndarray, bool]:
    if doc is None or doc.size == 0:
        return np.zeros(0, dtype=np.int64), False
    if eod is not None and int(doc[-1]) == eod:
        return doc[:-1], True
    return doc, False


def _eod_or_none(tokenizer) -> int | None:
    try:
        return tokenizer.eod_id
    except UsageError:
        return None


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_line(text: str) -> str:
    """``{"text": ...}`` UTF-8 JSON, with U+0085/U+2028/U+2029 escaped so that readers
    splitting on every Unicode line break (``str.splitlines``) still see one line."""
    return json.dumps({"text": text}, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"


def detokenize(data, tokenizer, output, *, stream=None, overwrite: bool = True,
               progress: Progress | None = None) -> dict:
    """Write one ``{"text": ...}`` JSON line per document of ``data``: the tokenizer's
    ``decode`` (special tokens kept) of the document without its final EOD token (UTF-8,
    non-ASCII as is except U+0085/U+2028/U+2029, which are escaped)."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        ds = data if isinstance(data, IndexedDataset) else stack.enter_context(
            IndexedDataset(data))
        refuse_overlap([output], [*map(str, ds.bin_paths), ds.idx_path])
        out = AtomicOutput(output, overwrite=overwrite, stream=stream)
        try:
            counts = detokenize_range(ds, tokenizer, out, 0, ds.num_documents,
                                      progress=progress)
        except BaseException:
            out.abort()
            raise
        out.commit()
    return {"output": os.fspath(output), "documents": counts["documents"],
            "bytes": counts["bytes"], "tokenizer": tokenizer.name,
            "seconds": round(time.monotonic() - started, 3)}


def detokenize_range(ds: IndexedDataset, tokenizer, out, start: int, stop: int, *,
                     progress: Progress | None = None) -> dict:
    """Write the JSON lines of documents ``start..stop`` of ``ds`` to ``out`` (anything
    with ``write(bytes)``); returns ``{"documents", "bytes"}``. One range or many
    consecutive ranges concatenated give the same bytes."""
    eod = _eod_or_none(tokenizer)
    docs = nbytes = 0
    for batch in dataset_documents(ds, start=start, stop=stop):
        cancel_point()
        bodies = [_body(doc, eod)[0] for doc in batch]
        texts = tokenizer.decode_batch(bodies)
        data_out = "".join(_json_line(t) for t in texts).encode("utf-8")
        out.write(data_out)
        docs += len(texts)
        nbytes += len(data_out)
        if progress is not None:
            progress(len(data_out))
    return {"documents": docs, "bytes": nbytes}


def retokenize(data, old, new, prefix: str | os.PathLike, *, overwrite: bool = True,
               progress: Progress | None = None, eod_id: int | None = None) -> dict:
    """Decode every document of ``data`` with ``old`` and encode it with ``new`` into the
    dataset ``prefix``: same documents in the same order (empty ones stay, as empty
    documents), ``new``'s EOD (or ``eod_id``) where the source document ended in ``old``'s.
    A document ending in an EOD when ``new`` has none and no ``eod_id`` is given is an
    error (the EODs would be lost), raised before anything is written when the first
    document shows it."""
    prefix = strip_suffix(prefix)
    dtype = np.dtype(new.dtype)
    eod_id = resolve_eod_id(new, eod_id)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        ds = data if isinstance(data, IndexedDataset) else stack.enter_context(
            IndexedDataset(data))
        if os.path.abspath(ds.prefix) == os.path.abspath(prefix):
            raise UsageError(f"output {prefix} is also the input")
        refuse_overlap([prefix + ".bin", prefix + ".idx"],
                       [*map(str, ds.bin_paths), ds.idx_path])
        check_first_eod(ds, old, new, eod_id)
        counts = retokenize_range(ds, old, new, prefix, 0, ds.num_documents, eod_id=eod_id,
                                  overwrite=overwrite, progress=progress)
    docs, tokens = counts["documents"], counts["tokens"]
    return {"output": prefix, "documents": docs, "tokens": tokens, "dtype": dtype.name,
            "from_tokenizer": old.name, "tokenizer": new.name,
            "seconds": round(time.monotonic() - started, 3)}


def resolve_eod_id(new, eod_id: int | None) -> int | None:
    """The token that ends retokenized documents: ``eod_id`` (checked against ``new``'s
    vocabulary) or ``new``'s EOD (None if it has none)."""
    if eod_id is not None:
        eod_id = int(eod_id)
        if eod_id < 0 or eod_id >= new.vocab_size:
            raise UsageError(f"--eod-id {eod_id} is not a token of {new.name} "
                             f"(0..{new.vocab_size - 1})")
        return eod_id
    return _eod_or_none(new)


def _no_eod(ds, old, new) -> UsageError:
    return UsageError(
        f"tokenizer {new.name} has no end-of-document token, and the documents of "
        f"{ds.prefix} end in {old.name}'s; pass --eod-id N to end them with token N")


def check_first_eod(ds: IndexedDataset, old, new, eod_id: int | None) -> None:
    """Refuse before writing anything when the first document ends in ``old``'s EOD and
    there is no token to end it with."""
    old_eod = _eod_or_none(old)
    if eod_id is None and old_eod is not None and ds.num_documents:
        first = next(dataset_documents(ds, batch_documents=1))[0]
        if _body(first, old_eod)[1]:
            raise _no_eod(ds, old, new)


def _decoded_utf8(old, bodies: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """``old``'s decode of the id arrays ``bodies`` as UTF-8 (data, offsets), made without
    ``str`` where the backend can (``decode_utf8_flat``), else None."""
    decode = getattr(old, "decode_utf8_flat", None)
    if decode is None:
        return None
    offsets = np.zeros(len(bodies) + 1, dtype=np.int64)
    np.cumsum([b.size for b in bodies], out=offsets[1:])
    kept = [b for b in bodies if b.size]
    return decode(np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64), offsets)


def retokenize_range(ds: IndexedDataset, old, new, prefix: str, start: int, stop: int, *,
                     eod_id: int | None = None, overwrite: bool = True,
                     progress: Progress | None = None, durable: bool = True) -> dict:
    """Retokenize documents ``start..stop`` of ``ds`` into the dataset ``prefix``, ending
    the documents that ended in ``old``'s EOD with ``eod_id`` (see :func:`resolve_eod_id`);
    returns ``{"documents", "tokens"}``. Consecutive ranges merged in order give the bytes
    of one range over everything."""
    old_eod = _eod_or_none(old)
    dtype = np.dtype(new.dtype)
    docs = tokens = 0
    with DatasetBuilder(prefix, dtype, overwrite=overwrite, durable=durable) as builder:
        for batch in dataset_documents(ds, start=start, stop=stop):
            cancel_point()
            parts = [_body(doc, old_eod) for doc in batch]
            ended = np.fromiter((p[1] for p in parts), dtype=bool, count=len(parts))
            if ended.any():
                if eod_id is None:
                    raise _no_eod(ds, old, new)
                if not 0 <= eod_id <= np.iinfo(dtype).max:
                    raise UsageError(f"token values do not fit in {dtype}")
            one_write = all(doc is not None for doc in batch)
            bodies = [p[0] for p in parts]
            utf8 = _decoded_utf8(old, bodies)
            stored = None
            if utf8 is None:
                ids, offsets = new.encode_flat(old.decode_batch(bodies))
            elif one_write and ended.all():
                # the common case (every document one sequence ending in an EOD): the ids
                # as stored, made by the encoder's workers (see _encode_stored)
                stored = _encode_stored(new, *utf8, dtype, eod_id)[:2]
            else:
                ids, offsets = _encode_utf8(new, *utf8)
            bodies = utf8 = None
            if one_write:
                # every document is one sequence: the batch in one write (as the loop below)
                ids, lengths = stored or _as_stored(ids, offsets, dtype,
                                                    eod_id if ended.any() else None, ended)
                builder.add_documents(ids, lengths)
                tokens += int(ids.size)
            else:
                for k, doc in enumerate(batch):
                    if doc is None:
                        builder.end_document()
                        continue
                    piece = ids[offsets[k] : offsets[k + 1]]
                    if parts[k][1]:
                        piece = np.append(piece, eod_id)
                    builder.add_document(piece)
                    tokens += piece.size
            docs += len(batch)
            if progress is not None:
                progress(sum(d.size for d in batch if d is not None) * ds.dtype.itemsize)
    return {"documents": docs, "tokens": tokens}
