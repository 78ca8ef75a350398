"""The compiled-tables cache: a compiled tokenizer model kept on disk between runs.

Compiling a ``tokenizer.json`` (parsing ~2 MB of JSON, checking the vocabulary and merges,
building the merge table and the added-token tries) takes ~0.1 s, a noticeable share of a
small ``tokenize`` run. So the engine backends (cpu, cuda) keep what a compile produced -
the stages, added tokens, sizes and :class:`~pythia_data.tokenize.model.EngineTables` - in
one file per tokenizer under ``$PYTHIA_DATA_CACHE/tokenizers/`` (else
``$XDG_CACHE_HOME/pythia-data/tokenizers/``, else ``~/.cache/pythia-data/tokenizers/``) and
later runs load it (~5 ms) instead of compiling. ``PYTHIA_DATA_TOKENIZER_CACHE=0`` turns
the cache off; deleting the folder clears it.

The file is found by a key: SHA-256 of the tokenizer.json's bytes, the package version, this
file format's version and the source of the modules that build the tables (so a changed
compiler, even without a new version, never reads an old file). A file is trusted only
after every check passes, else it is ignored and rewritten:

* its magic, format version and key (a file renamed to another key is stale);
* a SHA-256 of all its bytes at its end (a truncated or damaged file);
* every array's dtype and shape, and every value the kernels use as an index (trie nodes,
  a merge table with a free slot, ids below the vocabulary size): a file crafted to pass
  the digest still cannot make a kernel read or write out of bounds or loop forever.

Files are written whole to a temporary name and renamed (never seen half-written); at most
:data:`KEEP` files are kept (the oldest are removed). Nothing here raises: a cache that
cannot be read or written only costs the compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

import pythia_data
from pythia_data.tokenize.families import Family
from pythia_data.tokenize.model import AddedToken, EngineTables, Stage, TokenizerModel
from pythia_data.tokenize.spec import TokenizerConfig

__all__ = ["FORMAT", "KEEP", "cache_folder", "entry_path", "load_model", "save_model"]

#: this file format's version (part of the key)
FORMAT = 1
#: files kept in the cache folder
KEEP = 16
#: files larger than this are not read (a vocabulary of 1M tokens is ~60 MB)
MAX_BYTES = 512 << 20

_MAGIC = b"PYTHIA-DATA-TOKENIZER-TABLES\n"
_HEAD = struct.Struct("<32sII")  # magic (padded), format, meta length
_ALIGN = 64
_DIGEST = 32
_SUFFIX = ".tables"

#: the arrays of a file: name -> dtype
_ARRAYS = {
    "byte_id": np.int32, "merge_keys": np.int64, "merge_rank": np.int32,
    "merge_new": np.int32, "strie_next": np.int32, "strie_tok": np.int32,
    "ntrie_next": np.int32, "ntrie_tok": np.int32,
    "ww_keys": np.uint8, "ww_offs": np.int64, "ww_ids": np.int32,
}


def cache_folder() -> Path | None:
    """Where the files live, or None when ``PYTHIA_DATA_TOKENIZER_CACHE=0``."""
    if os.environ.get("PYTHIA_DATA_TOKENIZER_CACHE", "").strip().lower() in ("0", "off",
                                                                             "no", "false"):
        return None
    base = os.environ.get("PYTHIA_DATA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pythia-data")
    return Path(base) / "tokenizers"


@lru_cache(maxsize=1)
def _code_stamp() -> str:
    """SHA-256 of the package version, FORMAT and the tokenize and kernels sources."""
    h = hashlib.sha256(f"{pythia_data.__version__}\0{FORMAT}\0".encode())
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent / "kernels"):
        try:
            for src in sorted(folder.glob("*.py")):
                h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
        except OSError:
            h.update(b"unreadable\0")
    return h.hexdigest()


def _key(config: TokenizerConfig) -> str | None:
    digest = config.digest
    if digest is None:
        return None
    return hashlib.sha256(f"{digest}\0{_code_stamp()}".encode()).hexdigest()


def entry_path(config: TokenizerConfig) -> Path | None:
    """The cache file of ``config`` (None: no cache, or a config without its bytes)."""
    folder = cache_folder()
    key = _key(config) if folder is not None else None
    if key is None:
        return None
    return folder / (key[:40] + _SUFFIX)


# --------------------------------------------------------------------------- writing


def _family_out(family):
    if isinstance(family, Family):
        return {"family_id": int(family)}
    return family  # None or a str


def _stage_out(stage: Stage) -> list:
    return [stage.kind, stage.type, _family_out(stage.family), stage.reason]


def _encode(model: TokenizerModel, key: str) -> bytes:
    t = model.tables
    ww = t.whole_words
    ww_keys = np.frombuffer(b"".join(w for w, _ in ww), dtype=np.uint8)
    ww_offs = np.zeros(len(ww) + 1, dtype=np.int64)
    np.cumsum([len(w) for w, _ in ww], out=ww_offs[1:])
    arrays = {"byte_id": t.byte_id, "merge_keys": t.merge_keys, "merge_rank": t.merge_rank,
              "merge_new": t.merge_new, "strie_next": t.strie_next, "strie_tok": t.strie_tok,
              "ntrie_next": t.ntrie_next, "ntrie_tok": t.ntrie_tok, "ww_keys": ww_keys,
              "ww_offs": ww_offs, "ww_ids": np.array([i for _, i in ww], dtype=np.int32)}
    layout, pos = [], 0
    for name, dtype in _ARRAYS.items():
        arr = np.ascontiguousarray(arrays[name], dtype=dtype)
        arrays[name] = arr
        layout.append([name, int(arr.size), pos])
        pos += -(-arr.nbytes // _ALIGN) * _ALIGN
    meta = {
        "format": FORMAT, "key": key, "version": pythia_data.__version__,
        "stages": [_stage_out(s) for s in model.stages],
        "whole_words": bool(model.whole_words), "vocab_size": int(model.vocab_size),
        "eod_id": model.eod_id,
        "added": [[a.content, a.id, a.special, a.normalized, a.text] for a in model.added],
        "arrays": layout,
    }
    meta_bytes = json.dumps(meta, ensure_ascii=True).encode()
    head = _HEAD.pack(_MAGIC, FORMAT, len(meta_bytes))
    start = -(-(len(head) + len(meta_bytes)) // _ALIGN) * _ALIGN
    body = bytearray(start + pos)
    body[:len(head)] = head
    body[len(head):len(head) + len(meta_bytes)] = meta_bytes
    for name, _size, off in layout:
        raw = arrays[name].tobytes()
        body[start + off:start + off + len(raw)] = raw
    return bytes(body) + hashlib.sha256(body).digest()


def save_model(model: TokenizerModel) -> Path | None:
    """Write ``model``'s compiled tables to the cache (best effort: None when not written)."""
    path = entry_path(model.config)
    if path is None or not model.model.exact:
        return None
    tmp = None
    try:
        data = _encode(model, _key(model.config))
        path.parent.mkdir(parents=True, exist_ok=True)
        # a new file of a random name (O_EXCL: never through a link planted in the folder)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - best effort: a cache not written costs one compile
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return None
    _prune(path.parent)
    return path


def _prune(folder: Path) -> None:
    """Keep the newest KEEP files; remove temporary files a killed writer left (> 1 h old)."""
    try:
        entries = []
        old = time.time() - 3600
        for p in folder.iterdir():
            if p.name.endswith(_SUFFIX):
                entries.append((p.stat().st_mtime_ns, p))
            elif p.name.startswith(".") and p.name.endswith(".tmp") and p.stat().st_mtime < old:
                p.unlink()
        entries.sort(reverse=True)
        for _, p in entries[KEEP:]:
            p.unlink()
    except OSError:
        pass


# --------------------------------------------------------------------------- reading


class _Bad(Exception):
    """The file is not a valid entry for this key."""


def _need(ok, why: str = "") -> None:
    if not ok:
        raise _Bad(why)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _family_in(value, kind: str):
    if value is None or isinstance(value, str):
        return value
    _need(isinstance(value, dict) and kind == "pre_tokenizer" and _is_int(
        value.get("family_id")), "family")
    return Family(value["family_id"])


def _stages(raw) -> list[Stage]:
    kinds = ["normalizer", "pre_tokenizer", "model", "added_tokens", "decoder"]
    _need(isinstance(raw, list) and len(raw) == len(kinds), "stages")
    out = []
    for kind, entry in zip(kinds, raw):
        _need(isinstance(entry, list) and len(entry) == 4 and entry[0] == kind
              and isinstance(entry[1], str) and (entry[3] is None or isinstance(entry[3], str)),
              "stage")
        out.append(Stage(kind, entry[1], _family_in(entry[2], kind), entry[3]))
    _need(out[2].exact and out[2].family == "bpe", "model stage")
    return out


def _in_range(arr: np.ndarray, lo: int, hi: int) -> bool:
    """Every value in [lo, hi)."""
    return arr.size == 0 or (int(arr.min()) >= lo and int(arr.max()) < hi)


def _check_trie(nxt: np.ndarray, tok: np.ndarray, vocab: int) -> None:
    nodes = tok.size
    _need(nodes >= 1 and nxt.size == nodes * 256, "trie shape")
    _need(_in_range(nxt, -1, nodes) and _in_range(tok, -1, vocab), "trie values")


def _decode(buf: bytearray, key: str, config: TokenizerConfig) -> TokenizerModel:
    _need(len(buf) > _HEAD.size + _DIGEST, "short")
    magic, fmt, meta_len = _HEAD.unpack_from(buf)
    _need(magic == _MAGIC.ljust(32, b"\0") and fmt == FORMAT, "magic")
    view = memoryview(buf)
    _need(hashlib.sha256(view[:-_DIGEST]).digest() == bytes(view[-_DIGEST:]), "digest")
    meta_end = _HEAD.size + meta_len
    _need(meta_end <= len(buf) - _DIGEST, "meta length")
    meta = json.loads(bytes(view[_HEAD.size:meta_end]).decode("utf-8"))
    _need(isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("key") == key,
          "key")
    start = -(-meta_end // _ALIGN) * _ALIGN
    layout = meta.get("arrays")
    _need(isinstance(layout, list) and [e[0] if isinstance(e, list) else None
                                        for e in layout] == list(_ARRAYS), "layout")
    arrays = {}
    end = len(buf) - _DIGEST
    for name, size, off in layout:
        dtype = np.dtype(_ARRAYS[name])
        _need(_is_int(size) and _is_int(off) and size >= 0 and off >= 0 and off % _ALIGN == 0
              and start + off + size * dtype.itemsize <= end, "array bounds")
        # a view of the (writable, aligned) buffer: the same array types as a fresh compile,
        # so the cached kernels serve them without a new compile
        arrays[name] = np.frombuffer(buf, dtype=dtype, count=size, offset=start + off)
    vocab = meta.get("vocab_size")
    _need(_is_int(vocab) and 256 <= vocab < 2**31, "vocab size")
    eod = meta.get("eod_id")
    _need(eod is None or (_is_int(eod) and 0 <= eod < vocab), "eod id")
    _need(isinstance(meta.get("whole_words"), bool), "whole_words")
    added = []
    for entry in meta.get("added") if isinstance(meta.get("added"), list) else [None]:
        _need(isinstance(entry, list) and len(entry) == 5 and isinstance(entry[0], str)
              and _is_int(entry[1]) and 0 <= entry[1] < vocab and isinstance(entry[2], bool)
              and isinstance(entry[3], bool) and isinstance(entry[4], str), "added token")
        added.append(AddedToken(entry[0], entry[1], entry[2], entry[3],
                                entry[4].encode("utf-8"), entry[4]))
    stages = _stages(meta.get("stages"))

    a = arrays
    _need(a["byte_id"].size == 256 and _in_range(a["byte_id"], -1, vocab), "byte ids")
    size = a["merge_keys"].size
    _need(size >= 2 and size & (size - 1) == 0 and a["merge_rank"].size == size
          and a["merge_new"].size == size, "merge table shape")
    used = a["merge_keys"] != -1
    _need(not used.all(), "merge table without a free slot")
    keys = a["merge_keys"][used]
    _need(_in_range(keys >> 32, 0, vocab) and _in_range(keys & 0xFFFFFFFF, 0, vocab)
          and _in_range(a["merge_new"][used], 0, vocab)
          and _in_range(a["merge_rank"][used], 0, 2**31 - 1), "merge table values")
    _check_trie(a["strie_next"], a["strie_tok"], vocab)
    _check_trie(a["ntrie_next"], a["ntrie_tok"], vocab)
    offs, wkeys, wids = a["ww_offs"], a["ww_keys"], a["ww_ids"]
    _need(offs.size == wids.size + 1 and offs[0] == 0 and offs[-1] == wkeys.size
          and bool((np.diff(offs) >= 2).all()) and _in_range(wids, 0, vocab), "whole words")
    words = [(bytes(wkeys[offs[k]:offs[k + 1]]), int(wids[k])) for k in range(wids.size)]

    tables = EngineTables(a["byte_id"], a["merge_keys"], a["merge_rank"], a["merge_new"],
                          a["strie_next"], a["strie_tok"], a["ntrie_next"], a["ntrie_tok"],
                          vocab, whole_words=words)
    return TokenizerModel.restored(config, stages, whole_words=meta["whole_words"],
                                   added=added, vocab_size=vocab, eod_id=eod, tables=tables)


def load_model(config: TokenizerConfig) -> TokenizerModel | None:
    """``config``'s compiled model from the cache, or None (no entry, or one that fails a
    check: see the module docstring)."""
    path = entry_path(config)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                return None
            buf = bytearray(size)
            if fh.readinto(buf) != size:
                return None
    except OSError:
        return None
    try:
        return _decode(buf, _key(config), config)
    except Exception:  # noqa: BLE001 - any fault of the file: compile instead
        return None
