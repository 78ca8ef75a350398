#!/usr/bin/env python3
"""Quick in-memory speed check of one tokenizer.json on the cpu engine against HF
``tokenizers`` (and tiktoken where a ranks file is given), on the benchmark corpus.

Not the project's benchmark (that is ``bin/bench-tokenize``); a check for the Split-regex
families. Contenders alternate, ``--repeat`` times each; documents of the first
``--warm`` MB warm up every contender (compilation, caches) and are not timed; every timed
document is seen once per run. Prints MB/s (UTF-8 bytes) per run, the range, and how many
documents' ids differ from HF's.

    python tools/bench_families.py TOKENIZER.json [--mb 24] [--repeat 3]
        [--tiktoken RANKS.tiktoken --pattern cl100k]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def main(argv=None) -> int:
    from tokenize_corpus import build_corpus, default_cache, load_corpus
    from tokenizers import Tokenizer

    from pythia_data.tokenize import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("--mb", type=float, default=24.0)
    parser.add_argument("--warm", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tiktoken", type=Path, help="ranks file: add tiktoken as contender")
    args = parser.parse_args(argv)

    texts, _sources = load_corpus(build_corpus(default_cache(), 48))
    warm, timed, size, warm_size = [], [], 0, 0
    for t in texts:
        n = len(t.encode("utf-8"))
        if warm_size < args.warm * 1e6:
            warm.append(t)
            warm_size += n
        elif size < args.mb * 1e6:
            timed.append(t)
            size += n
    hf = Tokenizer.from_file(str(args.tokenizer))
    ours = load_tokenizer(args.tokenizer, workers=args.workers)
    print(f"{args.tokenizer}: backend {ours.backend}, family "
          f"{getattr(ours, 'family', '?')!s}; timed {size / 1e6:.1f} MB in {len(timed)} "
          f"documents; {args.workers} workers; {os.cpu_count()} cores")
    contenders = {
        "hf": lambda docs: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)],
        "ours": lambda docs: ours.encode_batch(docs),
    }
    if args.tiktoken:
        import json

        import tiktoken
        from tiktoken_to_json import read_ranks

        from pythia_data.tokenize.families import PATTERNS, recognise

        family = recognise(json.loads(args.tokenizer.read_text("utf-8"))["pre_tokenizer"])
        enc = tiktoken.Encoding("bench", pat_str=PATTERNS[family][0],
                                mergeable_ranks=read_ranks(args.tiktoken), special_tokens={})
        contenders["tiktoken"] = lambda docs: enc.encode_ordinary_batch(
            docs, num_threads=args.workers)
    for fn in contenders.values():
        fn(warm)
    speeds = {name: [] for name in contenders}
    results = {}
    for _ in range(args.repeat):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            out = fn(timed)
            speeds[name].append(size / 1e6 / (time.perf_counter() - t0))
            results[name] = out
    ref = results["hf"]
    for name, runs in speeds.items():
        differ = sum(1 for a, b in zip(results[name], ref) if list(a) != list(b))
        runs_s = " ".join(f"{s:.1f}" for s in runs)
        print(f"{name:9s} {min(runs):7.1f}-{max(runs):7.1f} MB/s  (runs: {runs_s})  "
              f"{differ} of {len(timed)} documents differ from hf")
    lo = min(speeds["ours"]) / max(speeds["hf"])
    hi = max(speeds["ours"]) / min(speeds["hf"])
    print(f"ours / hf: {lo:.1f}x-{hi:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
