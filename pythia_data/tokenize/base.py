"""The tokenizer protocol every backend implements, and the parts they share.

A :class:`Tokenizer` turns documents (Python ``str``) into token ids exactly as the
Hugging Face ``tokenizers`` library does for the same ``tokenizer.json`` (no post-processor
templates: no BOS/EOS are added; writers append :attr:`Tokenizer.eod_id` themselves), and
turns ids back into text exactly like ``tokenizers.Tokenizer.decode(ids,
skip_special_tokens=False)``.

Invalid input: a Python ``str`` may hold lone surrogates (U+D800..U+DFFF), which have no
UTF-8 form (HF ``tokenizers`` rejects such a string with a ``TypeError``). Every backend takes
``errors``: ``"strict"`` (the default) raises :class:`~pythia_data.errors.InputError` naming
the document and the character position; ``"replace"`` replaces each lone surrogate with
U+FFFD before tokenizing.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence

import numpy as np

from pythia_data.dataset import best_dtype
from pythia_data.errors import InputError, UsageError
from pythia_data.tokenize.registry import ERRORS_POLICIES

__all__ = ["Tokenizer", "encode_utf8", "ERRORS_POLICIES"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_errors(errors: str) -> str:
    if errors not in ERRORS_POLICIES:
        raise UsageError(f"errors must be one of {', '.join(ERRORS_POLICIES)}, not {errors!r}")
    return errors


def clean_text(text: str, index: int | str, errors: str) -> str:
    """``text`` with lone surrogates handled per ``errors`` (see the module docstring).

    ``index`` names the document in the error: its position in a batch, or a ``file:line``
    string."""
    where = f"document {index}" if isinstance(index, int) else str(index)
    if isinstance(text, bytearray):  # valid UTF-8 from the reader of long JSON lines
        return text.decode("utf-8")
    if not isinstance(text, str):
        raise UsageError(f"{where} is a {type(text).__name__}, not a str")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        if errors == "replace":
            return _SURROGATE.sub("\ufffd", text)
        raise InputError(
            f"{where}: lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start} "
            "cannot be encoded as UTF-8 (errors='replace', or --errors replace, substitutes "
            "U+FFFD)"
        ) from None
    return text


def encode_utf8(texts: Sequence[str], errors: str = "strict",
                first: int = 0) -> tuple[bytes, np.ndarray]:
    """All documents' UTF-8 bytes concatenated (one document's own buffer when there is
    one), and int64 byte offsets (length n+1). A ``bytearray`` document is taken as the
    valid UTF-8 it must be (the pipeline's reader of long JSON lines makes them). Errors
    name document ``first + i`` (``texts`` is a slice of a batch from ``first``)."""
    parts = []
    # the per-document rules are written out here and in utf8_gathered's loop: a helper
    # called per document made this 10-15 % slower on 1 M short documents
    for i, text in enumerate(texts, first):
        if isinstance(text, bytearray):
            parts.append(text)
            continue
        if not isinstance(text, str):
            raise UsageError(f"document {i} is a {type(text).__name__}, not a str")
        try:
            parts.append(text.encode("utf-8"))
        except UnicodeEncodeError:
            parts.append(clean_text(text, i, errors).encode("utf-8"))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    if parts:
        np.cumsum(np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts)),
                  out=offsets[1:])
    if len(parts) == 1:
        return parts[0], offsets
    return b"".join(parts), offsets


#: documents of at least this many characters are read in place (see utf8_gathered), in
#: batches whose documents have at least _IN_PLACE_MEAN characters on average (1 M
#: documents of 40 characters: encode + join 0.62 s, the per-document addresses 0.73-0.89 s)
_IN_PLACE_MIN = 256
_IN_PLACE_MEAN = 1024
_as_utf8 = None


def _utf8_api():
    """CPython's ``PyUnicode_AsUTF8AndSize`` through ctypes (made once)."""
    global _as_utf8
    if _as_utf8 is None:
        import ctypes

        fn = ctypes.pythonapi.PyUnicode_AsUTF8AndSize
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.py_object, ctypes.POINTER(ctypes.c_ssize_t)]
        _as_utf8 = fn
    return _as_utf8


def utf8_gathered(texts: Sequence[str], errors: str = "strict",
                  first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_utf8` as a uint8 array, with one copy of the long documents' text made
    without the GIL.

    A ``str`` of at least _IN_PLACE_MIN characters is read where Python keeps its UTF-8
    (``PyUnicode_AsUTF8AndSize``, what HF ``tokenizers`` reads too: an ASCII string's own
    characters; for other strings CPython makes the UTF-8 once and keeps it with the string
    for its lifetime); shorter ones are encoded and joined as in :func:`encode_utf8`. The
    bytes are then copied side by side by a numba kernel that releases the GIL, so the other
    workers' kernels and this copy run at once (``encode`` + ``join`` held the GIL for both
    copies: ~0.1 s of a 42 MB call, 10-15 % of its CPU). A batch of short documents
    (under _IN_PLACE_MEAN characters on average) is :func:`encode_utf8`'s join as it is: a
    document's address costs more than its copy."""
    n = len(texts)
    try:
        chars = sum(map(len, texts))
    except TypeError:  # not text: encode_utf8 names the document
        chars = 0
    if chars < _IN_PLACE_MEAN * n or n == 0:
        buf, offsets = encode_utf8(texts, errors, first)
        return np.frombuffer(buf, dtype=np.uint8), offsets
    import ctypes

    from pythia_data.kernels.gather import concat_addresses

    as_utf8 = _utf8_api()
    size = ctypes.c_ssize_t()
    ref = ctypes.byref(size)
    addresses = [0] * n
    lengths = [0] * n
    short: list[int] = []  # the documents encoded and joined, in order
    parts: list = []
    for i, text in enumerate(texts):
        if type(text) is str and len(text) >= _IN_PLACE_MIN:
            try:
                addresses[i] = as_utf8(text, ref)
                lengths[i] = size.value
                continue
            except UnicodeEncodeError:
                raw = clean_text(text, first + i, errors).encode("utf-8")
        elif isinstance(text, bytearray):
            raw = text
        elif not isinstance(text, str):
            raise UsageError(f"document {first + i} is a {type(text).__name__}, not a str")
        else:
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError:
                raw = clean_text(text, first + i, errors).encode("utf-8")
        short.append(i)
        parts.append(raw)
        lengths[i] = len(raw)
    addr = np.array(addresses, dtype=np.uint64).view(np.int64)
    lens = np.array(lengths, dtype=np.int64)
    if parts:
        joined = np.frombuffer(b"".join(parts), dtype=np.uint8)
        idx = np.array(short, dtype=np.int64)
        pos = np.zeros(idx.size, dtype=np.int64)
        np.cumsum(lens[idx][:-1], out=pos[1:])
        addr[idx] = joined.ctypes.data + pos
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    concat_addresses(addr, lens, out)  # texts and joined stay alive until it returns
    return out, offsets


def utf8_batch(data, offsets) -> tuple[np.ndarray, np.ndarray]:
    """The arguments of an ``encode_utf8_flat`` checked: ``data`` (bytes or a 1-D uint8
    array) as a contiguous uint8 array, ``offsets`` as int64 starting at 0, never
    decreasing, ending within ``data`` (UsageError otherwise)."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(
        data, bytes | bytearray | memoryview) else np.ascontiguousarray(data)
    offs = np.asarray(offsets)
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise UsageError("data must be bytes or a 1-D uint8 array")
    if offs.ndim != 1 or offs.size < 1 or offs.dtype.kind not in "iu":
        raise UsageError("offsets must be a 1-D integer array of length n_docs + 1")
    offs = offs.astype(np.int64, copy=False)
    if offs[0] != 0 or np.any(np.diff(offs) < 0) or offs[-1] > buf.size:
        raise UsageError("offsets must start at 0, never decrease and end within data")
    return buf, offs


class Tokenizer(abc.ABC):
    """What every backend provides (see the module docstring for the exactness contract).

    Attributes: ``name`` (where the vocabulary came from), ``backend`` (registry name),
    ``vocab_size`` (largest id + 1, added tokens included), ``eod_id`` (the end-of-document
    token, ``<|endoftext|>`` for GPT-NeoX-20B), ``dtype`` (uint16 below 65,500 ids, else
    int32: GPT-NeoX's rule).
    """

    name: str
    backend: str
    vocab_size: int
    _eod_id: int | None

    #: Backends that execute the compiled model (cpu, cuda) define a classmethod
    #: ``unsupported_reason(model) -> str | None``: why they cannot run a tokenizer exactly
    #: (:func:`pythia_data.tokenize.load_tokenizer` then falls back to ``hf``). None: the
    #: backend takes any tokenizer.json as it is (hf), and gets the config itself.
    unsupported_reason = None

    @property
    def eod_id(self) -> int:
        if self._eod_id is None:
            raise UsageError(f"tokenizer {self.name} has no end-of-document token")
        return self._eod_id

    @property
    def dtype(self) -> np.dtype:
        return best_dtype(self.vocab_size)

    @abc.abstractmethod
    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, offsets)``: all documents' ids concatenated (int32) and int64 offsets of
        length ``len(texts) + 1``; document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One int32 id array per document."""
        ids, offsets = self.encode_flat(texts)
        return [ids[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    def encode(self, text: str) -> np.ndarray:
        """The ids of one document."""
        return self.encode_flat([text])[0]

    @abc.abstractmethod
    def decode(self, ids) -> str:
        """Text of ``ids`` (== HF ``decode(ids, skip_special_tokens=False)``)."""

    def decode_batch(self, batch) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} backend={self.backend} vocab={self.vocab_size}>"


def as_id_list(ids) -> np.ndarray:
    """``ids`` (any integer sequence/array) as a 1-D int64 array; negative ids are an error."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and arr.dtype.kind not in "iu":
        raise UsageError(f"token ids must be integers, not {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise UsageError(f"negative token id {int(arr.min())}")
    return arr
