"""The compiled tokenizer model: a ``tokenizer.json`` parsed once into its stages.

HF ``tokenizers`` runs a tokenizer as a pipeline of named stages. :func:`compile_model`
reads each stage of a :class:`~pythia_data.tokenize.spec.TokenizerConfig` once and either
recognises it exactly (the engine's kernels then run it, with the tables they need) or
refuses it with the reason (the caller then falls back to the ``hf`` backend or says why):

* **normalizer**: none, or ``NFC`` (also a ``Sequence`` holding only those);
* **pre-tokenizer**: ``ByteLevel`` with GPT-2's regex (family ``gpt2``, GPT-NeoX-20B);
  other pre-tokenizers are offered to :func:`pythia_data.tokenize.families.recognise` when
  that module exists (``Split``-regex families), else refused;
* **model**: byte-level ``BPE`` with a vocabulary holding every byte token; merges in HF's
  meaning (a pair listed twice keeps its *last* rank, as HF's merge map does); ``dropout``,
  ``byte_fallback``, ``continuing_subword_prefix``, ``end_of_word_suffix`` refused;
  ``ignore_merges`` recognised (a pre-token that is itself in the vocabulary is that one
  token; see :attr:`TokenizerModel.whole_words`); ``Unigram``, ``WordPiece``, ``WordLevel``
  refused;
* **added tokens**: the ids HF gives them, not the stored ones (HF re-adds the list when it
  loads a file: a content already known keeps that id — the vocabulary's, or an earlier
  added token's — else it gets the next free id, in list order); normalized ones are matched
  (and decoded) in their normalized form; ``lstrip`` / ``rstrip`` / ``single_word`` refused;
* **decoder**: ``ByteLevel`` (bytes of each token through GPT-2's byte map) or none (HF then
  joins the token strings with spaces); others refused.

``truncation``, ``padding`` and the post-processor are not stages of this model: writers never
truncate, pad or add template tokens (the ``hf`` backend switches them off too).

The model is what the ``cpu`` and ``cuda`` backends execute: :attr:`TokenizerModel.tables`
(:class:`EngineTables`, built on first use) and :func:`unicode_tables` are plain numpy arrays.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from pythia_data.errors import FormatError
from pythia_data.kernels.bpe import build_merge_table
from pythia_data.kernels.pretokenize import nfc_utf8_kernel
from pythia_data.tokenize.base import encode_utf8
from pythia_data.tokenize.spec import EOD_CANDIDATES, TokenizerConfig

__all__ = [
    "AddedToken",
    "EngineTables",
    "Stage",
    "TokenizerModel",
    "UnicodeTables",
    "build_trie",
    "bytes_to_unicode",
    "as_model",
    "compile_model",
    "nfc_bytes",
    "unicode_tables",
    "N_CP",
    "GPT2_FAMILY",
]

_TABLES = Path(__file__).resolve().parent.parent / "data" / "unicode_tables.npz"
N_CP = 0x110000
UTF8_BYTES = [b for b in range(256) if b not in (0xC0, 0xC1) and b < 0xF5]
#: the pre-tokenizer family of GPT-2 / GPT-NeoX-20B: ByteLevel with its built-in regex
GPT2_FAMILY = "gpt2"


# --------------------------------------------------------------------------- shared tables


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


@dataclass(frozen=True, eq=False)
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

    def without_nfc(self) -> UnicodeTables:
        """The same tables for a file without a normalizer: a one-element NFC flag, which
        tells the kernels to skip the NFC check altogether."""
        return _without_nfc(self)


@lru_cache(maxsize=2)
def _without_nfc(u: UnicodeTables) -> UnicodeTables:
    return UnicodeTables(u.cls, u.ccc, np.zeros(1, dtype=u.nfc_flag.dtype), u.dec_index,
                         u.dec_off, u.dec_data, u.comp_keys, u.comp_vals, u.meta)


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


def nfc_bytes(texts) -> list[str]:
    """NFC of each text with the engine's (HF-probed) tables (for tests and tools)."""
    data, offsets = encode_utf8(texts)
    arr = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(4 * arr.size + 16, dtype=np.uint8)
    out_off = np.zeros(offsets.size, dtype=np.int64)
    nfc_utf8_kernel(arr, offsets, *unicode_tables().nfc_args(), out, out_off)
    return [bytes(out[out_off[i]:out_off[i + 1]]).decode("utf-8")
            for i in range(len(texts))]


def build_trie(entries: list[tuple[bytes, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A byte trie ``(next int32[nodes * 256], tok int32[nodes])`` of ``(content, id)``;
    the first entry wins for duplicate contents (HF's leftmost-longest matcher keeps the
    first pattern)."""
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
        if toks[node] < 0:
            toks[node] = tid
    nxt_arr = np.full(len(nodes) * 256, -1, dtype=np.int32)
    for i, edges in enumerate(nodes):
        for b, j in edges.items():
            nxt_arr[i * 256 + b] = j
    return nxt_arr, np.array(toks, dtype=np.int32)


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: ``kind`` (normalizer, pre_tokenizer, model, added_tokens,
    decoder), ``type`` (as the file names it, or "none"), ``family`` (what the engine runs:
    e.g. ``nfc``, ``gpt2``, ``bpe``, ``byte_level``, ``join``; None when refused) and
    ``reason`` (None = recognised exactly)."""

    kind: str
    type: str
    family: object = None
    reason: str | None = None

    @property
    def exact(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        what = self.type if self.family is None or str(self.family) == self.type else \
            f"{self.type} ({self.family})"
        return f"{self.kind}: {what}" + ("" if self.reason is None else
                                         f" - not supported: {self.reason}")


@dataclass(frozen=True)
class AddedToken:
    """An added token as HF keeps it after loading: ``id`` is HF's, ``match`` the UTF-8
    bytes found in the text (normalized for ``normalized`` tokens) and ``text`` the string
    its id decodes from."""

    content: str
    id: int
    special: bool
    normalized: bool
    match: bytes
    text: str


def _normalizer_stage(norm) -> Stage:
    if norm is None:
        return Stage("normalizer", "none", "none")
    if not isinstance(norm, dict):
        return Stage("normalizer", type(norm).__name__, reason="not an object")
    kind = str(norm.get("type"))
    if kind == "NFC":
        return Stage("normalizer", kind, "nfc")
    if kind == "Sequence":
        inner = norm.get("normalizers")
        if isinstance(inner, list):
            stages = [_normalizer_stage(n) for n in inner]
            bad = [s for s in stages if not s.exact]
            if bad:
                return Stage("normalizer", kind, reason=bad[0].reason)
            fams = [s.family for s in stages if s.family != "none"]
            if len(fams) <= 1:
                return Stage("normalizer", kind, fams[0] if fams else "none")
            return Stage("normalizer", kind, reason="a Sequence of several normalizers")
    return Stage("normalizer", kind, reason=f"normalizer {kind!r}")


def _families_module():
    try:
        return importlib.import_module("pythia_data.tokenize.families")
    except ImportError:
        return None


def _pre_tokenizer_stage(pre) -> Stage:
    if pre is None:
        return Stage("pre_tokenizer", "none", reason="no pre-tokenizer")
    if not isinstance(pre, dict):
        return Stage("pre_tokenizer", type(pre).__name__, reason="not an object")
    kind = str(pre.get("type"))
    if kind == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return Stage("pre_tokenizer", kind, GPT2_FAMILY)
    families = _families_module()
    if families is not None and hasattr(families, "recognise"):
        found = families.recognise(pre)
        if isinstance(found, str):  # a reason
            return Stage("pre_tokenizer", kind, reason=found)
        return Stage("pre_tokenizer", kind, found)
    if kind == "ByteLevel":
        return Stage("pre_tokenizer", kind, reason="ByteLevel options (add_prefix_space, "
                                                   "use_regex=false alone)")
    return Stage("pre_tokenizer", kind, reason=f"pre-tokenizer {kind!r} not recognised")


def _decoder_stage(dec) -> Stage:
    if dec is None:
        return Stage("decoder", "none", "join")
    if not isinstance(dec, dict):
        return Stage("decoder", type(dec).__name__, reason="not an object")
    kind = str(dec.get("type"))
    if kind == "ByteLevel":
        return Stage("decoder", kind, "byte_level")
    return Stage("decoder", kind, reason=f"decoder {kind!r}")


def _merge_pair(merge, i: int, name: str) -> tuple[str, str]:
    if isinstance(merge, str):
        parts = merge.split(" ")
        if len(parts) == 2:
            return parts[0], parts[1]
    elif isinstance(merge, list | tuple) and len(merge) == 2 and all(
            isinstance(m, str) for m in merge):
        return merge[0], merge[1]
    raise FormatError(f"{name}: merge {i} ({merge!r}) is not a pair of tokens")


_ADDED_FLAGS = ("special", "normalized", "lstrip", "rstrip", "single_word")


def _hf_added_tokens(entries: list[dict], token_id, model_size: int):
    """Replay how HF's added vocabulary takes the file's ``added_tokens`` list: each token
    gets the id its content already has (an earlier added token, then the model's
    vocabulary) or the next free one, in list order; a token equal in every field to one
    already kept is skipped; the last token given an id is the one kept for it (matched with
    its own ``normalized`` flag, decoded from its content). Returns (content -> id,
    id -> token)."""
    by_content: dict[str, int] = {}
    by_id: dict[int, dict] = {}
    for tok in entries:
        if not tok["content"] or any(t == tok for t in by_id.values()):
            continue
        new_id = by_content.get(tok["content"])
        if new_id is None:
            new_id = token_id(tok["content"])
        if new_id is None:
            top = max(by_content.values(), default=None)
            if top is None:
                new_id = model_size
            elif top >= model_size or model_size == 0:
                new_id = top + 1
            else:
                new_id = model_size
        by_content[tok["content"]] = new_id
        by_id[new_id] = tok
    return by_content, by_id


# --------------------------------------------------------------------------- the model


#: what a model restored from the compiled-tables cache compiles from its file on first use
_FROM_FILE = ("vocab", "merges", "merge_ranks", "_model_reason", "_added_reason")


class TokenizerModel:
    """A ``tokenizer.json`` compiled into its stages (see the module docstring)."""

    def __init__(self, config: TokenizerConfig):
        self.config = config
        self.name = config.name
        raw = config.raw
        self.normalizer = _normalizer_stage(raw.get("normalizer"))
        self.pre_tokenizer = _pre_tokenizer_stage(raw.get("pre_tokenizer"))
        self.decoder = _decoder_stage(raw.get("decoder"))
        model = raw.get("model")
        if not isinstance(model, dict):
            raise FormatError(f"{self.name}: 'model' is not an object")
        self.vocab, self._model_reason = self._read_vocab(model)
        self.model = Stage("model", str(model.get("type")),
                           "bpe" if self._model_reason is None else None, self._model_reason)
        self.merges: list[tuple[str, str]] = []
        self.whole_words = False
        if self.model.exact:
            self._read_bpe(model)
        self.added, self._added_reason = self._read_added(raw.get("added_tokens"))
        self.added_tokens_stage = Stage("added_tokens", f"{len(self.added)} tokens",
                                        None if self._added_reason else "exact",
                                        self._added_reason)
        ids = list(self.vocab.values()) + [t.id for t in self.added]
        self.vocab_size = (max(ids) + 1) if ids else 0
        self.eod_id = self._find_eod()

    # -- restored from the compiled-tables cache (pythia_data.tokenize.tables_cache)

    @classmethod
    def restored(cls, config: TokenizerConfig, stages: list[Stage], *, whole_words: bool,
                 added: list[AddedToken], vocab_size: int, eod_id: int | None,
                 tables: EngineTables) -> TokenizerModel:
        """A model rebuilt from what a compiled one recorded: its stages, added tokens, sizes
        and engine tables. The vocabulary and merges (:data:`_FROM_FILE`) are compiled from
        ``config`` only if something asks for them (decoding without a decoder does)."""
        self = cls.__new__(cls)
        self.config = config
        self.name = config.name
        (self.normalizer, self.pre_tokenizer, self.model, self.added_tokens_stage,
         self.decoder) = stages
        self.whole_words = whole_words
        self.added = added
        self.added_text = {t.id: t.text for t in added}
        self.vocab_size = vocab_size
        self.eod_id = eod_id
        self._from_file = True
        tables.model = self
        self.__dict__["tables"] = tables
        return self

    def __getattr__(self, name: str):
        # only for attributes not set: a restored model's vocabulary and merges
        if name in _FROM_FILE and self.__dict__.get("_from_file"):
            full = TokenizerModel(self.config)
            for key in _FROM_FILE:
                if key in full.__dict__:
                    self.__dict__[key] = full.__dict__[key]
            self.__dict__["_from_file"] = False
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- reading

    def _read_vocab(self, model: dict) -> tuple[dict[str, int], str | None]:
        kind = model.get("type")
        vocab = model.get("vocab")
        if kind == "Unigram":
            out = {}
            if isinstance(vocab, list):
                for i, entry in enumerate(vocab):
                    if isinstance(entry, list | tuple) and entry and isinstance(entry[0], str):
                        out.setdefault(entry[0], i)
            return out, "model type 'Unigram'"
        if not isinstance(vocab, dict):
            return {}, f"model type {kind!r} without a token -> id vocabulary"
        for key, val in vocab.items():
            if not isinstance(val, int) or isinstance(val, bool) or val < 0:
                raise FormatError(f"{self.name}: vocabulary id of {key!r} is not a "
                                  "non-negative integer")
        if kind != "BPE":
            return dict(vocab), f"model type {kind!r}"
        for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix",
                    "byte_fallback"):
            if model.get(key):
                return dict(vocab), f"BPE option {key}"
        if len(set(vocab.values())) != len(vocab):
            return dict(vocab), "a vocabulary that gives one id to several tokens"
        b2u = bytes_to_unicode()
        if any(b2u[b] not in vocab for b in UTF8_BYTES):
            return dict(vocab), "vocabulary without all 256 byte tokens"
        return dict(vocab), None

    def _read_bpe(self, model: dict) -> None:
        merges = model.get("merges") or []
        if not isinstance(merges, list):
            raise FormatError(f"{self.name}: 'merges' is not a list")
        # HF builds its merge map by inserting merge i with rank i in order: a pair listed
        # twice keeps its last rank
        last: dict[tuple[str, str], int] = {}
        for i, merge in enumerate(merges):
            pair = _merge_pair(merge, i, self.name)
            if pair[0] not in self.vocab or pair[1] not in self.vocab or \
                    pair[0] + pair[1] not in self.vocab:
                raise FormatError(f"{self.name}: merge {i} ({pair[0]!r} {pair[1]!r}) is not "
                                  "in the vocabulary")
            last[pair] = i
        self.merges = sorted(last, key=last.__getitem__)
        self.merge_ranks = [last[p] for p in self.merges]
        self.whole_words = bool(model.get("ignore_merges"))

    def _read_added(self, entries) -> tuple[list[AddedToken], str | None]:
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise FormatError(f"{self.name}: 'added_tokens' is not a list")
        clean = []
        reason = None
        for i, tok in enumerate(entries):
            # every field is required, as HF requires it (it cannot load the file otherwise)
            if not isinstance(tok, dict) or not isinstance(tok.get("content"), str):
                raise FormatError(f"{self.name}: added token {i} has no string 'content'")
            if not isinstance(tok.get("id"), int) or isinstance(tok.get("id"), bool) or \
                    tok["id"] < 0:
                raise FormatError(f"{self.name}: added token {i} has no non-negative 'id'")
            for key in _ADDED_FLAGS:
                if not isinstance(tok.get(key), bool):
                    raise FormatError(f"{self.name}: added token {i} ({tok['content']!r}) has "
                                      f"no true/false {key!r}")
            special = tok["special"]
            clean.append({"content": tok["content"], "special": special,
                          "normalized": tok["normalized"], "lstrip": tok["lstrip"],
                          "rstrip": tok["rstrip"], "single_word": tok["single_word"]})
            if reason is None and (tok.get("lstrip") or tok.get("rstrip")
                                   or tok.get("single_word")):
                reason = "added tokens with lstrip/rstrip/single_word"
        _by_content, by_id = _hf_added_tokens(clean, self.vocab.get, len(self.vocab))
        out = []
        for i, tok in by_id.items():
            norm = tok["normalized"] and self.normalizer.family == "nfc"
            text = self._normalize_text(tok["content"]) if norm else tok["content"]
            out.append(AddedToken(tok["content"], i, tok["special"], tok["normalized"],
                                  text.encode("utf-8"), text))
        # what each added id decodes from: its token's content, normalized as HF stores it
        self.added_text = {t.id: t.text for t in out}
        return out, reason

    def _normalize_text(self, text: str) -> str:
        if self.normalizer.family == "nfc" and not text.isascii():
            return nfc_bytes([text])[0]
        return text

    def _find_eod(self) -> int | None:
        special = {t.content: t.id for t in self.added if t.special}
        for cand in EOD_CANDIDATES:
            if cand in special:
                return special[cand]
        for cand in EOD_CANDIDATES:
            if cand in self.vocab:
                return self.vocab[cand]
        return None

    # -- what the engine can run

    @property
    def stages(self) -> list[Stage]:
        return [self.normalizer, self.pre_tokenizer, self.model, self.added_tokens_stage,
                self.decoder]

    def refusal(self, families=(GPT2_FAMILY,)) -> str | None:
        """Why an engine that runs the pre-tokenizer ``families`` cannot run this model
        exactly (the first refused stage, the model's first), or None."""
        for stage in [self.model] + [s for s in self.stages if s is not self.model]:
            if stage.reason is not None:
                return stage.reason
        fam = self.pre_tokenizer.family
        if fam not in families:
            return f"pre-tokenizer family {fam} (this engine runs {', '.join(map(str, families))})"
        return None

    def token_text(self, i: int) -> str | None:
        """The string HF's decoder receives for id ``i`` (None: no such id)."""
        if i in self.added_text:
            return self.added_text[i]
        return self._vocab_r.get(i)

    @cached_property
    def _vocab_r(self) -> dict[int, str]:
        return {i: t for t, i in self.vocab.items()}

    @cached_property
    def tables(self) -> EngineTables:
        """The kernels' tables (built on first use)."""
        return EngineTables.from_model(self)

    def __repr__(self) -> str:
        return f"<TokenizerModel {self.name}: " + "; ".join(s.describe() for s in self.stages) + ">"


def compile_model(config: TokenizerConfig) -> TokenizerModel:
    return TokenizerModel(config)


def as_model(spec: TokenizerConfig | TokenizerModel) -> TokenizerModel:
    """The compiled model of ``spec`` (a model is returned as it is)."""
    return spec if isinstance(spec, TokenizerModel) else compile_model(spec)


@dataclass
class EngineTables:
    """Everything the kernels read, as plain numpy arrays (numba.cuda can take them too).
    The decode tables (``tok_off``, ``tok_bytes``) are built on first use: an encode-only
    job (the tokenize command) never pays for them."""

    byte_id: np.ndarray  # int32[256]
    merge_keys: np.ndarray  # int64, (left << 32 | right), -1 empty
    merge_rank: np.ndarray  # int32
    merge_new: np.ndarray  # int32
    strie_next: np.ndarray  # raw-text added tokens (normalized: false)
    strie_tok: np.ndarray
    ntrie_next: np.ndarray  # normalized added tokens
    ntrie_tok: np.ndarray
    vocab_size: int
    #: ignore_merges: (pre-token bytes, id) of the vocabulary tokens BPE would not give as
    #: one token (the engine pre-seeds its pre-token caches with them)
    whole_words: list[tuple[bytes, int]] = field(default_factory=list)
    model: TokenizerModel | None = field(default=None, repr=False)

    @classmethod
    def from_model(cls, model: TokenizerModel) -> EngineTables:
        vocab = model.vocab
        b2u = bytes_to_unicode()
        # bytes that never occur in UTF-8 (C0, C1, F5..FF) may be missing: -1
        byte_id = np.array([vocab.get(b2u[b], -1) for b in range(256)], dtype=np.int32)
        n = len(model.merges)
        left = np.fromiter((vocab[a] for a, _ in model.merges), dtype=np.int64, count=n)
        right = np.fromiter((vocab[b] for _, b in model.merges), dtype=np.int64, count=n)
        new = np.fromiter((vocab[a + b] for a, b in model.merges), dtype=np.int64, count=n)
        rank = np.asarray(model.merge_ranks, dtype=np.int64)
        size = _pow2_at_least(2 * max(1, n) + 1)
        mk, mr, mn = build_merge_table(left, right, rank, new, size)
        raw_entries = [(t.match, t.id) for t in model.added if not t.normalized]
        norm_entries = [(t.match, t.id) for t in model.added if t.normalized]
        strie_next, strie_tok = build_trie(raw_entries)
        ntrie_next, ntrie_tok = build_trie(norm_entries)
        tables = cls(byte_id, mk, mr, mn, strie_next, strie_tok, ntrie_next, ntrie_tok,
                     model.vocab_size, model=model)
        if model.whole_words:
            tables.whole_words = _whole_words(model, tables)
        return tables

    @cached_property
    def _decode_tables(self) -> tuple[np.ndarray, np.ndarray]:
        u2b = {u: b for b, u in bytes_to_unicode().items()}
        pieces = [b""] * self.vocab_size
        for i in range(self.vocab_size):
            text = self.model.token_text(i)
            if text is None:
                continue
            if all(ch in u2b for ch in text):
                pieces[i] = bytes(u2b[ch] for ch in text)
            else:  # what HF's ByteLevel decoder does with characters outside the map
                pieces[i] = text.encode("utf-8")
        tok_off = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum([len(p) for p in pieces], out=tok_off[1:])
        return tok_off, np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()

    @property
    def tok_off(self) -> np.ndarray:
        """int64[vocab + 1]: where each id's decoded bytes start in :attr:`tok_bytes`."""
        return self._decode_tables[0]

    @property
    def tok_bytes(self) -> np.ndarray:
        return self._decode_tables[1]


def _whole_words(model: TokenizerModel, t: EngineTables) -> list[tuple[bytes, int]]:
    """ignore_merges: (bytes, id) of the vocabulary tokens whose BPE is not the token
    itself (one kernel call over the whole vocabulary)."""
    from pythia_data.kernels.bpe import bpe_single_ids, pack_merge_table

    u2b = {u: b for b, u in bytes_to_unicode().items()}
    words, ids = [], []
    for text, i in model.vocab.items():
        if len(text) < 2 or not all(ch in u2b for ch in text):
            continue  # one byte, or not a byte-level token (never a pre-token's bytes)
        words.append(bytes(u2b[ch] for ch in text))
        ids.append(i)
    keys = np.frombuffer(b"".join(words), dtype=np.uint8).copy()
    offs = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum([len(w) for w in words], out=offs[1:])
    single = bpe_single_ids(keys, offs, t.byte_id,
                            pack_merge_table(t.merge_keys, t.merge_rank, t.merge_new))
    return [(words[k], ids[k]) for k in range(len(words)) if single[k] != ids[k]]
