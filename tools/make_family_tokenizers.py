#!/usr/bin/env python3
"""Train the small test tokenizers of the Split-regex families (``tests/data/families/``).

The real vocabularies (cl100k, Llama 3, o200k, Qwen 2, DeepSeek V3) live on the Hugging Face
hub, which tests cannot reach; their pre-tokenizers are what the engine must get right, and
BPE is the same code for every family. So each family gets a small byte-level BPE trained
offline with HF ``tokenizers`` on this machine's multilingual corpus
(``tools/tokenize_corpus.py``), with the family's exact pre-tokenizer (the pattern strings
of ``pythia_data/tokenize/families.py``, copied from the public tokenizer.json files), its
normalizer (Qwen 2 and 3.5: NFC; DeepSeek V3: an empty Sequence) and a few special tokens.

Run:  python tools/make_family_tokenizers.py [--vocab 2000] [--mb 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from pythia_data.tokenize.families import PATTERNS, Family, recognise  # noqa: E402

OUT = REPO / "tests" / "data" / "families"
NAMES = {Family.CL100K: "cl100k", Family.O200K: "o200k", Family.QWEN2: "qwen2",
         Family.DEEPSEEK_V3: "deepseek_v3", Family.QWEN3_5: "qwen3_5"}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train(family: Family, texts: list[str], vocab: int) -> dict:
    import tokenizers as tk
    from tokenizers import Regex, pre_tokenizers

    tok = tk.Tokenizer(tk.models.BPE())
    if family in (Family.QWEN2, Family.QWEN3_5):
        tok.normalizer = tk.normalizers.NFC()
    elif family == Family.DEEPSEEK_V3:
        tok.normalizer = tk.normalizers.Sequence([])
    splits = [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in PATTERNS[family]]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    raw = json.loads(tok.to_str())
    got = recognise(raw["pre_tokenizer"])
    if got != family:
        raise SystemExit(f"{NAMES[family]}: trained file is recognised as {got!r}")
    return raw


def main(argv=None) -> int:
    from tokenize_corpus import build_corpus, load_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--mb", type=float, default=3.0)
    parser.add_argument("--only", choices=sorted(NAMES.values()), action="append",
                        help="train only these (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_corpus(Path(tmp), args.mb)
        texts, _sources = load_corpus(path)
    OUT.mkdir(parents=True, exist_ok=True)
    for family, name in NAMES.items():
        if args.only and name not in args.only:
            continue
        raw = train(family, texts, args.vocab)
        target = OUT / f"{name}.json"
        target.write_text(json.dumps(raw, ensure_ascii=False, separators=(",", ":")) + "\n",
                          encoding="utf-8")
        print(f"{target.relative_to(REPO)}: {len(raw['model']['vocab'])} tokens, "
              f"{len(raw['model']['merges'])} merges, {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
