"""What ``find`` looks for: queries as token sequences, made from text, ids or a file.

A text query is tokenized with the dataset's tokenizer twice: as given, and with a space in
front. Byte-level BPE tokenizes a word differently at the start of a document (``"Hello"``)
than after a space (``" Hello"``), so the sentence as it occurs mid-document is usually the
second form. Both are searched; each hit says which one matched (``variant``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from pythia_data.errors import InputError, UsageError

__all__ = ["Query", "parse_token_ids", "queries_from_file", "queries_from_text",
           "queries_from_tokens", "check_ids"]

AS_GIVEN = "as given"
LEADING_SPACE = "leading space"
TOKENS = "tokens"
MAX_QUERY_TOKENS = 1 << 16  # longer than any training row of any real run


@dataclass(frozen=True)
class Query:
    """One token sequence to find. ``label`` is the query as the user wrote it (text, or
    ids joined with commas); ``index`` numbers the user's queries (both variants of one text
    share it); ``variant`` is ``as given``, ``leading space`` or ``tokens``."""

    label: str
    tokens: tuple[int, ...]
    index: int = 0
    variant: str = TOKENS

    def to_dict(self) -> dict:
        return {"query": self.label, "query_index": self.index, "variant": self.variant,
                "tokens": list(self.tokens)}


def parse_token_ids(text: str) -> list[int]:
    """``"12,345, 6"`` -> [12, 345, 6] (UsageError naming the bad item)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or parts == [""]:
        raise UsageError("empty --tokens: give comma-separated token ids, e.g. 510,2137")
    out = []
    for p in parts:
        if not p:
            raise UsageError(f"empty item in token ids {text!r}")
        try:
            out.append(int(p, 10))
        except ValueError:
            raise UsageError(f"token id {p!r} is not an integer (in {text!r})") from None
    return out


def check_ids(ids, dtype: np.dtype, vocab_size: int | None = None, where: str = "") -> None:
    """Ids must be non-negative, fit the dataset's dtype and (when known) the vocabulary."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    for t in ids:
        if t < 0:
            raise UsageError(f"token id {t}{where} is negative")
        if info is not None and t > info.max:
            raise UsageError(f"token id {t}{where} does not fit this dataset's "
                             f"{np.dtype(dtype).name} tokens (largest {info.max})")
        if vocab_size is not None and t >= vocab_size:
            raise UsageError(f"token id {t}{where} is outside the tokenizer's vocabulary "
                             f"(0..{vocab_size - 1})")


def _check_length(tokens, label: str) -> None:
    if len(tokens) == 0:
        raise UsageError(f"query {label!r} has no tokens")
    if len(tokens) > MAX_QUERY_TOKENS:
        raise UsageError(f"query {label[:40]!r}... has {len(tokens)} tokens (at most "
                         f"{MAX_QUERY_TOKENS})")


def queries_from_text(texts, tokenizer, start_index: int = 0) -> list[Query]:
    """Each text as given and with a leading space (when that tokenizes differently)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise UsageError(f"a text query must be a str, not {type(t).__name__}")
        if not t.strip() and t == "":
            raise UsageError("empty query text")
    plain = tokenizer.encode_batch(texts)
    spaced = tokenizer.encode_batch([" " + t for t in texts])
    out = []
    for k, (t, a, b) in enumerate(zip(texts, plain, spaced)):
        a = tuple(int(x) for x in a)
        b = tuple(int(x) for x in b)
        _check_length(a, t)
        out.append(Query(t, a, start_index + k, AS_GIVEN))
        if b != a and not t.startswith(" "):
            out.append(Query(t, b, start_index + k, LEADING_SPACE))
    return out


def queries_from_tokens(items, start_index: int = 0) -> list[Query]:
    """``items``: one sequence of ids, a list of them, or comma-separated strings."""
    if isinstance(items, str):
        items = [items]
    elif len(items) and isinstance(items[0], (int, np.integer)):
        items = [items]
    out = []
    for k, item in enumerate(items):
        ids = parse_token_ids(item) if isinstance(item, str) else [int(x) for x in item]
        label = ",".join(map(str, ids))
        _check_length(ids, label)
        out.append(Query(label, tuple(ids), start_index + k, TOKENS))
    return out


def queries_from_file(path, tokenizer_factory) -> list[Query]:
    """One query per line. ``*.jsonl``: each line a JSON string (text), or an object with
    ``"text"`` or ``"tokens"`` (a list of ids); otherwise each non-empty line is a text.
    ``tokenizer_factory()`` is called only when a text query needs it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder, not a file of queries")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InputError(f"no queries file {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    texts: list[tuple[int, str]] = []
    ids: list[tuple[int, list[int]]] = []
    jsonl = path.endswith(".jsonl")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not jsonl:
            texts.append((n, line))
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise InputError(f"{path}:{n}: not JSON") from None
        if isinstance(obj, str):
            texts.append((n, obj))
        elif isinstance(obj, dict) and isinstance(obj.get("text"), str):
            texts.append((n, obj["text"]))
        elif isinstance(obj, dict) and isinstance(obj.get("tokens"), list) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in obj["tokens"]):
            ids.append((n, obj["tokens"]))
        else:
            raise InputError(f"{path}:{n}: expected a string, {{\"text\": ...}} or "
                             "{\"tokens\": [ids]}")
    if not texts and not ids:
        raise InputError(f"{path} holds no queries")
    out: list[Query] = []
    order = sorted([(n, "t", v) for n, v in texts] + [(n, "i", v) for n, v in ids],
                   key=lambda x: x[0])
    tok = tokenizer_factory() if texts else None
    for k, (n, kind, value) in enumerate(order):
        try:
            if kind == "t":
                if value == "":
                    raise UsageError("empty query text")
                out += queries_from_text([value], tok, start_index=k)
            else:
                out += queries_from_tokens([value], start_index=k)
        except UsageError as exc:
            raise UsageError(f"{path}:{n}: {exc}") from None
    return out
