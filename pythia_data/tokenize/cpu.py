"""The ``cpu`` backend: an exact byte-level BPE engine in numba.

Pipeline per document (the same order as HF ``tokenizers``):

1. split out the non-normalized added tokens (``<|endoftext|>``, ``<|padding|>``) on the raw
   UTF-8 bytes, leftmost-longest (byte trie);
2. NFC each remaining piece on its own (tables probed from HF, see
   ``tools/gen_unicode_tables.py``; pieces whose code points NFC never touches are skipped);
3. split out the normalized added tokens (the 23 runs of 2..24 spaces), leftmost-longest;
4. the GPT-2 regex on each remaining piece (code point classes probed from HF's Oniguruma);
5. each pre-token's bytes: a hit in the per-thread pre-token cache (open-addressing table in
   numpy arrays) or byte-level BPE (lowest merge rank first, leftmost on ties) then cached.

Documents are split over ``workers`` threads (the kernels release the GIL), each with its own
cache. Calls on one tokenizer object are serialized by a lock.

Invalid input: see :mod:`pythia_data.tokenize.base` (``errors="strict"`` raises InputError
naming the document and character of a lone surrogate; ``"replace"`` substitutes U+FFFD).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pythia_data.errors import FormatError, UsageError
from pythia_data.kernels.bpe import (
    MAX_CACHED_KEY,
    build_merge_table,
    cache_seed_kernel,
    decode_bytes_kernel,
    encode_kernel,
    unreached_kernel,
)
from pythia_data.kernels.pretokenize import nfc_utf8_kernel
from pythia_data.tokenize.base import Tokenizer, _check_errors, as_id_list, encode_utf8
from pythia_data.tokenize.families import recognise
from pythia_data.tokenize.spec import TokenizerConfig

__all__ = ["CpuTokenizer", "EngineTables", "unicode_tables", "bytes_to_unicode", "nfc_bytes"]

_TABLES = Path(__file__).resolve().parent.parent / "data" / "unicode_tables.npz"
N_CP = 0x110000
_PARALLEL_MIN_BYTES = 1 << 18
_UTF8_BYTES = [b for b in range(256) if b not in (0xC0, 0xC1) and b < 0xF5]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _pow2_at_least(n: int) -> int:
    size = 1
    while size < n:
        size <<= 1
    return size


@dataclass(frozen=True)
class UnicodeTables:
    cls: np.ndarray
    ccc: np.ndarray
    nfc_flag: np.ndarray
    dec_index: np.ndarray
    dec_off: np.ndarray
    dec_data: np.ndarray
    comp_keys: np.ndarray
    comp_vals: np.ndarray
    meta: str

    def nfc_args(self):
        return (self.ccc, self.nfc_flag, self.dec_index, self.dec_off, self.dec_data,
                self.comp_keys, self.comp_vals)


@lru_cache(maxsize=1)
def unicode_tables(path: str | None = None) -> UnicodeTables:
    """The shipped code point tables, expanded to flat lookup arrays."""
    try:
        with np.load(path or _TABLES) as z:
            raw = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path or _TABLES}: cannot read unicode tables ({exc})") from None
    cls = raw["cls"].astype(np.uint8)
    ccc = raw["ccc"].astype(np.uint8)
    dcp = raw["decomp_cp"].astype(np.int64)
    doff = raw["decomp_off"].astype(np.int64)
    ddata = raw["decomp_data"].astype(np.int32)
    if cls.shape != (N_CP,) or ccc.shape != (N_CP,) or doff.size != dcp.size + 1:
        raise FormatError("unicode tables have the wrong shape")
    dec_index = np.full(N_CP, -1, dtype=np.int32)
    dec_index[dcp] = np.arange(dcp.size, dtype=np.int32)
    first = raw["comp_first"].astype(np.int64)
    second = raw["comp_second"].astype(np.int64)
    result = raw["comp_result"].astype(np.int32)
    # the kernels size their scratch for <= 4 code points and <= 4 UTF-8 bytes per input one
    lens = np.diff(doff)
    if lens.size and lens.max() > 4:
        raise FormatError("unicode tables: a decomposition longer than 4 code points")
    nfc_flag = np.zeros(N_CP, dtype=np.uint8)
    nfc_flag[dcp] = 1
    nfc_flag[ccc > 0] = 1
    nfc_flag[second] = 1
    if nfc_flag[:128].any():  # the encoder skips ASCII when looking for NFC work
        raise FormatError("unicode tables: NFC would touch an ASCII character")
    size = _pow2_at_least(4 * max(1, first.size))
    comp_keys = np.full(size, -1, dtype=np.int64)
    comp_vals = np.full(size, -1, dtype=np.int32)
    keys = (first << 21) | second
    mask = size - 1
    for key, val in zip(keys.tolist(), result.tolist()):
        h = (key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        slot = (h ^ (h >> 29)) & mask
        while comp_keys[slot] != -1:
            slot = (slot + 1) & mask
        comp_keys[slot] = key
        comp_vals[slot] = val
    return UnicodeTables(cls, ccc, nfc_flag, dec_index, doff, ddata, comp_keys, comp_vals,
                         str(raw.get("meta", "")))


def nfc_bytes(texts: Sequence[str]) -> list[str]:
    """NFC of each text with the engine's (HF-probed) tables (for tests and tools)."""
    data, offsets = encode_utf8(texts)
    arr = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(4 * arr.size + 16, dtype=np.uint8)
    out_off = np.zeros(offsets.size, dtype=np.int64)
    nfc_utf8_kernel(arr, offsets, *unicode_tables().nfc_args(), out, out_off)
    return [bytes(out[out_off[i]:out_off[i + 1]]).decode("utf-8")
            for i in range(len(texts))]


def _build_trie(entries: list[tuple[bytes, int]]) -> tuple[np.ndarray, np.ndarray]:
    nodes: list[dict[int, int]] = [{}]
    toks = [-1]
    for content, tid in entries:
        node = 0
        for b in content:
            nxt = nodes[node].get(b)
            if nxt is None:
                nxt = len(nodes)
                nodes[node][b] = nxt
                nodes.append({})
                toks.append(-1)
            node = nxt
        if toks[node] < 0:  # first entry wins for duplicate contents
            toks[node] = tid
    nxt_arr = np.full(len(nodes) * 256, -1, dtype=np.int32)
    for i, edges in enumerate(nodes):
        for b, j in edges.items():
            nxt_arr[i * 256 + b] = j
    return nxt_arr, np.array(toks, dtype=np.int32)


def _merge_pair(merge) -> tuple[str, str]:
    if isinstance(merge, str):
        left, sep, right = merge.partition(" ")
        if not sep:
            raise FormatError(f"bad merge {merge!r}")
        return left, right
    if isinstance(merge, list | tuple) and len(merge) == 2:
        return merge[0], merge[1]
    raise FormatError(f"bad merge {merge!r}")


@dataclass
class EngineTables:
    """Everything the kernels read, as plain numpy arrays (numba.cuda can take them too)."""

    byte_id: np.ndarray  # int32[256]
    merge_keys: np.ndarray  # int64, (left << 32 | right), -1 empty
    merge_rank: np.ndarray  # int32
    merge_new: np.ndarray  # int32
    strie_next: np.ndarray  # raw-text added tokens (special)
    strie_tok: np.ndarray
    ntrie_next: np.ndarray  # normalized added tokens
    ntrie_tok: np.ndarray
    tok_off: np.ndarray  # int64[vocab+1] decode byte strings
    tok_bytes: np.ndarray  # uint8
    vocab_size: int

    @classmethod
    def from_config(cls, config: TokenizerConfig, normalize) -> EngineTables:
        model = config.model
        vocab: dict[str, int] = model.get("vocab") or {}
        b2u = bytes_to_unicode()
        u2b = {u: b for b, u in b2u.items()}
        # bytes that never occur in UTF-8 (C0, C1, F5..FF) may be missing: -1
        byte_id = np.array([vocab.get(b2u[b], -1) for b in range(256)], dtype=np.int32)
        if any(byte_id[b] < 0 for b in _UTF8_BYTES):
            raise FormatError(f"{config.name}: vocabulary lacks a byte token")
        merges = model.get("merges") or []
        left = np.empty(len(merges), dtype=np.int64)
        right = np.empty(len(merges), dtype=np.int64)
        new = np.empty(len(merges), dtype=np.int64)
        for i, merge in enumerate(merges):
            a, b = _merge_pair(merge)
            try:
                left[i], right[i], new[i] = vocab[a], vocab[b], vocab[a + b]
            except KeyError:
                raise FormatError(f"{config.name}: merge {i} ({a!r} {b!r}) is not in the "
                                  "vocabulary") from None
        size = _pow2_at_least(2 * max(1, len(merges)) + 1)
        mk, mr, mn = build_merge_table(left, right, np.arange(len(merges), dtype=np.int64),
                                       new, size)
        raw_entries, norm_entries = [], []
        for tok in config.added_tokens:
            content = tok["content"]
            if not content:
                continue
            if tok.get("normalized", not tok.get("special", False)):
                norm_entries.append((normalize(content).encode("utf-8"), int(tok["id"])))
            else:
                raw_entries.append((content.encode("utf-8"), int(tok["id"])))
        strie_next, strie_tok = _build_trie(raw_entries)
        ntrie_next, ntrie_tok = _build_trie(norm_entries)
        vocab_size = config.vocab_size
        pieces = [b""] * vocab_size
        texts: dict[int, str] = {i: t for t, i in vocab.items()}
        texts.update({int(t["id"]): t["content"] for t in config.added_tokens})
        for i, text in texts.items():
            if all(ch in u2b for ch in text):
                pieces[i] = bytes(u2b[ch] for ch in text)
            else:  # what HF's ByteLevel decoder does with characters outside the map
                pieces[i] = text.encode("utf-8")
        tok_off = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum([len(p) for p in pieces], out=tok_off[1:])
        tok_bytes = np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()
        return cls(byte_id, mk, mr, mn, strie_next, strie_tok, ntrie_next, ntrie_tok,
                   tok_off, tok_bytes, vocab_size)


def ignore_merges_unreached(config: TokenizerConfig) -> list[tuple[bytes, int]]:
    """The vocabulary entries (bytes, id) of 2+ bytes that BPE does not turn into exactly
    themselves: the only pre-tokens for which BPE's ``ignore_merges`` changes ids.

    ``ignore_merges`` (Llama 3 sets it) returns a pre-token that is itself a vocabulary
    entry as that entry, skipping the merges. Vocabularies converted from tiktoken ranks with
    one merge per token have none; Llama 3's file (several merges per token) has a few
    hundred. The engine seeds each worker's pre-token cache with them, so a pre-token equal
    to one of them gets its id without BPE. Measured once per config object (about 1 s for a
    128k vocabulary)."""
    cached = config.__dict__.get("_ignore_merges_unreached")
    if cached is not None:
        return cached
    vocab: dict[str, int] = config.model.get("vocab") or {}
    u2b = {u: b for b, u in bytes_to_unicode().items()}
    # Without a normalizer no pre-token can equal an added token's content (those are split
    # out of the text first), so such vocabulary entries cannot be reached either way.
    # (NFC could make one: U+212A KELVIN SIGN normalizes to "K".)
    skip = set()
    if _normalizer(config.raw.get("normalizer")) == "none":
        skip = {t["content"].encode("utf-8") for t in config.added_tokens if t.get("content")}
    pieces, ids = [], []
    for text, tid in vocab.items():
        if len(text) > 1 and all(ch in u2b for ch in text):
            piece = bytes(u2b[ch] for ch in text)
            if piece not in skip:
                pieces.append(piece)
                ids.append(int(tid))
    tables = EngineTables.from_config(config, lambda s: s)
    off = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=off[1:])
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    flags = np.zeros(len(pieces), dtype=np.uint8)
    unreached_kernel(data, off, np.array(ids, dtype=np.int64), tables.byte_id,
                     tables.merge_keys, tables.merge_rank, tables.merge_new, flags)
    out = [(pieces[i], ids[i]) for i in np.nonzero(flags)[0].tolist()]
    config.__dict__["_ignore_merges_unreached"] = out
    return out


def _normalizer(norm) -> str | None:
    """``"NFC"`` or ``"none"`` for the normalizers the engine runs (none, NFC, and a
    ``Sequence`` of zero or one of them), else None."""
    if norm is None:
        return "none"
    if not isinstance(norm, dict):
        return None
    if norm.get("type") == "NFC":
        return "NFC"
    if norm.get("type") == "Sequence":
        inner = norm.get("normalizers")
        if inner == []:
            return "none"
        if isinstance(inner, list) and len(inner) == 1:
            return _normalizer(inner[0]) if inner[0] is not None else None
    return None


class _Cache:
    """One worker's pre-token cache (see :mod:`pythia_data.kernels.bpe`). ``seed``:
    (keys, key offsets, ids) of entries that are always there (re-inserted after a clear)."""

    def __init__(self, slots: int = 1 << 20, seed=None):
        self.seed = seed
        entries = slots // 2
        self.slots = np.full(slots, -1, dtype=np.int64)
        self.rec = np.zeros(4 * entries, dtype=np.int64)
        self.keys = np.zeros(entries * 16, dtype=np.uint8)
        self.vals = np.zeros(entries * 4, dtype=np.int32)
        self.state = np.zeros(6, dtype=np.int64)
        self.hits = 0
        self.misses = 0
        self._seed()

    def _seed(self):
        if self.seed is not None and self.seed[2].size:
            done = cache_seed_kernel(*self.seed, *self.args()[:4], self.state)
            if done != self.seed[2].size:  # the sizes below make this impossible
                raise UsageError("pre-token cache too small for the ignore_merges entries")

    def args(self):
        return self.slots, self.rec, self.keys, self.vals, self.state

    def after_call(self):
        """A full cache is kept while it still serves most pre-tokens (the frequent ones
        arrive first), and cleared when the call it served had more misses than hits (the
        text changed: another language or domain)."""
        hits, misses = int(self.state[4]), int(self.state[5])
        self.hits += hits
        self.misses += misses
        self.state[4:] = 0
        if self.state[3] and misses > hits:
            self.clear()

    def clear(self):
        self.slots.fill(-1)
        self.state[:] = 0
        self._seed()


class CpuTokenizer(Tokenizer):
    backend = "cpu"

    @staticmethod
    def unsupported_reason(config: TokenizerConfig) -> str | None:
        """Why the engine cannot run ``config`` exactly, or None."""
        raw, model = config.raw, config.model
        if model.get("type") != "BPE":
            return f"model type {model.get('type')!r}"
        for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                return f"BPE option {key}"
        if model.get("byte_fallback"):
            return "BPE option byte_fallback"
        norm = raw.get("normalizer")
        if _normalizer(norm) is None:
            kind = norm.get("type") if isinstance(norm, dict) else type(norm).__name__
            return f"normalizer {kind!r}"
        family = recognise(raw.get("pre_tokenizer"))
        if isinstance(family, str):
            return family
        dec = raw.get("decoder")
        if dec is not None and dec.get("type") != "ByteLevel":
            return f"decoder {dec.get('type')!r}"
        for tok in config.added_tokens:
            if tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word"):
                return "added tokens with lstrip/rstrip/single_word"
        vocab = model.get("vocab") or {}
        b2u = bytes_to_unicode()
        if not isinstance(vocab, dict) or any(b2u[b] not in vocab for b in _UTF8_BYTES):
            return "vocabulary without all 256 byte tokens"
        if model.get("ignore_merges"):
            unreached = ignore_merges_unreached(config)
            if any(len(key) > MAX_CACHED_KEY for key, _id in unreached):
                return (f"BPE option ignore_merges with a vocabulary entry of more than "
                        f"{MAX_CACHED_KEY} bytes that BPE does not reach")
        return None

    def __init__(self, config: TokenizerConfig, *, errors: str = "strict",
                 workers: int | None = None, cache_slots: int = 1 << 20):
        reason = self.unsupported_reason(config)
        if reason is not None:
            raise UsageError(f"{config.name}: the cpu backend does not support {reason}")
        self.errors = _check_errors(errors)
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        if not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a positive integer, not {workers!r}")
        if cache_slots < 1024 or cache_slots & (cache_slots - 1):
            raise UsageError("cache_slots must be a power of two >= 1024")
        self.workers = workers
        self.name = config.name
        self.config = config
        self.unicode = unicode_tables()
        do_nfc = _normalizer(config.raw.get("normalizer")) == "NFC"
        self.family = recognise(config.raw.get("pre_tokenizer"))
        if do_nfc:
            self.unicode_eff = self.unicode
        else:  # no normalizer: NFC tables that never fire
            u = self.unicode
            self.unicode_eff = UnicodeTables(u.cls, u.ccc, np.zeros_like(u.nfc_flag),
                                             u.dec_index, u.dec_off, u.dec_data, u.comp_keys,
                                             u.comp_vals, u.meta)
        normalize = (lambda s: nfc_bytes([s])[0]) if do_nfc else (lambda s: s)
        self.tables = EngineTables.from_config(config, normalize)
        self.vocab_size = self.tables.vocab_size
        self._eod_id = config.eod_id
        self._seed = None
        if config.model.get("ignore_merges"):
            unreached = ignore_merges_unreached(config)
            keys = b"".join(k for k, _ in unreached)
            off = np.zeros(len(unreached) + 1, dtype=np.int64)
            np.cumsum([len(k) for k, _ in unreached], out=off[1:])
            self._seed = (np.frombuffer(keys, dtype=np.uint8).copy() if keys else
                          np.zeros(1, np.uint8), off,
                          np.array([i for _, i in unreached], dtype=np.int32))
            # room for the seeds plus ordinary entries (keys up to 128 bytes each)
            cache_slots = max(cache_slots, _pow2_at_least(64 * len(unreached) + 1024))
        self._cache_slots = cache_slots
        self._caches: list[_Cache] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ encode

    def _cache(self, i: int) -> _Cache:
        while len(self._caches) <= i:
            self._caches.append(_Cache(self._cache_slots, self._seed))
        return self._caches[i]

    def _run(self, data: np.ndarray, offsets: np.ndarray, d0: int, d1: int, cache: _Cache):
        t, u = self.tables, self.unicode_eff
        cap = max(1024, int(offsets[d1] - offsets[d0]) // 2 + 64)
        out = np.empty(cap, dtype=np.int32)
        out_offsets = np.zeros(d1 - d0 + 1, dtype=np.int64)
        d, w = d0, 0
        while True:
            d, w, status = encode_kernel(
                data, offsets, d, d1,
                u.cls, u.ccc, u.nfc_flag, u.dec_index, u.dec_off, u.dec_data, u.comp_keys,
                u.comp_vals,
                t.strie_next, t.strie_tok, t.ntrie_next, t.ntrie_tok,
                t.byte_id, t.merge_keys, t.merge_rank, t.merge_new,
                *cache.args(),
                out, out_offsets[d - d0:], w, int(self.family),
            )
            cache.after_call()
            if status == 0:
                return out[:w], out_offsets
            need = w + 4 * int(offsets[d + 1] - offsets[d]) + 16
            grown = np.empty(max(2 * out.size, need), dtype=np.int32)
            grown[:w] = out[:w]
            out = grown

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        buf, offsets = encode_utf8(texts, self.errors)
        data = np.frombuffer(buf, dtype=np.uint8)
        n = len(offsets) - 1
        with self._lock:
            nw = min(self.workers, n)
            if nw <= 1 or data.size < _PARALLEL_MIN_BYTES:
                ids, offs = self._run(data, offsets, 0, n, self._cache(0))
                return ids, offs
            bounds = np.searchsorted(offsets, np.linspace(0, data.size, nw + 1)[1:-1])
            cuts = [0, *sorted(set(int(b) for b in bounds) - {0, n}), n]
            caches = [self._cache(i) for i in range(len(cuts) - 1)]
            if self._pool is None or self._pool._max_workers < len(caches):
                self._pool = ThreadPoolExecutor(max_workers=max(self.workers, len(caches)))
            futures = [self._pool.submit(self._run, data, offsets, cuts[i], cuts[i + 1],
                                         caches[i]) for i in range(len(caches))]
            parts = [f.result() for f in futures]
        ids = np.concatenate([p[0] for p in parts])
        out_offsets = np.zeros(n + 1, dtype=np.int64)
        base = 0
        for (part_ids, part_offs), d0, d1 in zip(parts, cuts[:-1], cuts[1:]):
            out_offsets[d0 + 1 : d1 + 1] = part_offs[1:] + base
            base += part_ids.size
        return ids, out_offsets

    # ------------------------------------------------------------------ decode

    def decode(self, ids) -> str:
        arr = as_id_list(ids)
        t = self.tables
        valid = arr[arr < self.vocab_size]
        total = int((t.tok_off[valid + 1] - t.tok_off[valid]).sum())
        out = np.empty(total, dtype=np.uint8)
        n = decode_bytes_kernel(arr, t.tok_off, t.tok_bytes, out)
        return out[:n].tobytes().decode("utf-8", "replace")
