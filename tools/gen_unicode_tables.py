#!/usr/bin/env python3
"""Generate ``pythia_data/data/unicode_tables.npz`` by probing Hugging Face ``tokenizers``.

The cpu tokenizer engine must classify code points and NFC-normalize text exactly like
``tokenizers`` does, and ``tokenizers`` carries its own Unicode data (Oniguruma regex classes
of Unicode 16; NFC tables of an older Unicode), which differ from Python's ``unicodedata``.
So the tables are measured from ``tokenizers`` itself, once, here; nothing calls
``unicodedata`` at run time (it is only used below to *propose* combining-class values that
are then confirmed by probing).

Arrays written (all code points 0..0x10FFFF; surrogates are never probed and stay 0):

  cls          uint8[0x110000]  bit 1: \\p{L}, bit 2: \\p{N}, bit 4: \\s (Oniguruma, as HF);
                                bit 8: [\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}], bit 16:
                                [\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}], bit 32: \\p{M},
                                bit 64: [\\p{P}\\p{S}]
  ccc          uint8[0x110000]  canonical combining class as HF's NFD reorders by it
                                (only for code points that HF does not decompose)
  decomp_cp    int32[K]         code points whose HF NFD is not themselves (sorted)
  decomp_off   int64[K+1]       ... offsets into
  decomp_data  int32[...]       ... their full NFD
  comp_first, comp_second, comp_result  int32[P]  primary compositions HF's NFC performs
  meta         str              tokenizers version used

Run:  python tools/gen_unicode_tables.py [--out pythia_data/data/unicode_tables.npz]
The test ``tests/test_tokenize_unicode.py`` re-probes HF and checks the shipped tables.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

import numpy as np

N_CP = 0x110000
CLASS_BITS = {
    "L": (1, r"\p{L}"),
    "N": (2, r"\p{N}"),
    "WS": (4, r"\s"),
    # the classes of the Split-regex families (pythia_data/kernels/pretokenize_split.py)
    "UPPER": (8, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"),  # o200k's first letter class
    "LOWER": (16, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"),  # o200k's second letter class
    "M": (32, r"\p{M}"),
    "PS": (64, r"[\p{P}\p{S}]"),  # DeepSeek V3
}


def all_code_points() -> np.ndarray:
    cps = np.arange(N_CP, dtype=np.int64)
    return cps[(cps < 0xD800) | (cps > 0xDFFF)]


def probe_class(pattern: str, cps: np.ndarray) -> np.ndarray:
    """Boolean per code point in ``cps``: does ``pattern`` (HF Regex) match it?"""
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    out = np.ones(cps.size, dtype=bool)
    step = 1 << 16
    for lo in range(0, cps.size, step):
        chunk = cps[lo : lo + step]
        text = "".join(map(chr, chunk.tolist()))
        for _piece, (a, b) in split.pre_tokenize_str(text):
            out[lo + a : lo + b] = False  # kept pieces are the non-matching runs
    return out


def probe_classes(cps: np.ndarray) -> np.ndarray:
    cls = np.zeros(N_CP, dtype=np.uint8)
    for bit, pattern in CLASS_BITS.values():
        cls[cps[probe_class(pattern, cps)]] |= bit
    return cls


def normalize_each(norm, cps) -> list[str]:
    """``norm.normalize_str(chr(c))`` for each c, batched with a "\\n" separator (inert for
    NFC/NFD: a starter that never composes); "\\n" itself is probed alone."""
    cps = list(cps)
    out: list[str] = []
    step = 1 << 16
    for lo in range(0, len(cps), step):
        chunk = cps[lo : lo + step]
        plain = [c for c in chunk if c != 0x0A]
        parts = norm.normalize_str("\n".join(map(chr, plain))).split("\n")
        if len(parts) != len(plain):
            raise RuntimeError("separator probe broke: a normalization produced a newline")
        it = iter(parts)
        for c in chunk:
            out.append(norm.normalize_str("\n") if c == 0x0A else next(it))
    return out


def reorder_probe(nfd, pairs: list[tuple[int, int]]) -> np.ndarray:
    """For each (x, y): does HF NFD turn "x y" into "y x"? Probes are separated by "a"."""
    res = np.zeros(len(pairs), dtype=bool)
    step = 1 << 16
    for lo in range(0, len(pairs), step):
        chunk = pairs[lo : lo + step]
        text = "".join("a" + chr(x) + chr(y) for x, y in chunk)
        got = nfd.normalize_str(text)
        if len(got) != len(text):
            raise RuntimeError("reorder probe changed the length")
        for i, (x, _y) in enumerate(chunk):
            res[lo + i] = ord(got[3 * i + 1]) != x
    return res


def probe_ccc(nfd, stable: np.ndarray) -> np.ndarray:
    """HF's combining class for every code point in ``stable`` (those HF does not decompose)."""
    ccc = np.zeros(N_CP, dtype=np.uint8)
    m240, m1 = 0x0345, 0x0334  # COMBINING GREEK YPOGEGRAMMENI (240), TILDE OVERLAY (1)
    cands = [int(c) for c in stable if c not in (m240, m1)]
    p1 = reorder_probe(nfd, [(m240, c) for c in cands])  # 0 < w < 240
    p2 = reorder_probe(nfd, [(c, m1) for c in cands])  # w > 1
    nonzero = sorted({c for c, a, b in zip(cands, p1, p2) if a or b} | {m240, m1})
    # Reference marks: per proposed value, the first code point HF agrees is a mark.
    refs: dict[int, int] = {}
    for c in nonzero:
        v = unicodedata.combining(chr(c))
        if v and v not in refs:
            refs[v] = c
    values = sorted(refs)
    # Check the reference marks against each other: m_u m_v reorders iff u > v.
    pairs = [(refs[u], refs[v]) for u in values for v in values]
    swapped = reorder_probe(nfd, pairs)
    expect = [u > v for u in values for v in values]
    if list(swapped) != expect:
        raise RuntimeError("reference combining marks do not order as their classes say")
    for c in nonzero:
        before = reorder_probe(nfd, [(c, refs[v]) for v in values])  # swaps iff v < w
        after = reorder_probe(nfd, [(refs[v], c) for v in values])  # swaps iff w < v
        k, j = int(before.sum()), int(after.sum())
        if k + j != len(values) - 1:
            raise RuntimeError(f"U+{c:04X}: combining class not among the reference values")
        ccc[c] = values[k]
    return ccc


def probe_nfc(cps: np.ndarray):
    from tokenizers import normalizers

    nfd, nfc = normalizers.NFD(), normalizers.NFC()
    nfd_each = normalize_each(nfd, cps.tolist())
    nfc_each = normalize_each(nfc, cps.tolist())
    decomp_cp, decomp_off, decomp_data = [], [0], []
    stable = []
    for c, d in zip(cps.tolist(), nfd_each):
        if d == chr(c):
            stable.append(c)
            continue
        decomp_cp.append(c)
        decomp_data.extend(map(ord, d))
        decomp_off.append(len(decomp_data))
    ccc = probe_ccc(nfd, np.array(stable))
    # Primary composites: decomposed by NFD, recomposed by NFC.
    firsts, seconds, results = [], [], []
    for c, d, k in zip(cps.tolist(), nfd_each, nfc_each):
        if d == chr(c) or k != chr(c):
            continue
        head = nfc.normalize_str(d[:-1])
        if len(head) != 1:
            raise RuntimeError(f"U+{c:04X}: cannot find its composition pair")
        if nfc.normalize_str(head + d[-1]) != chr(c):
            raise RuntimeError(f"U+{c:04X}: pair does not compose back")
        firsts.append(ord(head))
        seconds.append(ord(d[-1]))
        results.append(c)
    return (
        ccc,
        np.array(decomp_cp, dtype=np.int32),
        np.array(decomp_off, dtype=np.int64),
        np.array(decomp_data, dtype=np.int32),
        np.array(firsts, dtype=np.int32),
        np.array(seconds, dtype=np.int32),
        np.array(results, dtype=np.int32),
    )


def build_tables() -> dict:
    import tokenizers

    cps = all_code_points()
    cls = probe_classes(cps)
    ccc, dcp, doff, ddata, cf, cs, cr = probe_nfc(cps)
    return {
        "cls": cls,
        "ccc": ccc,
        "decomp_cp": dcp,
        "decomp_off": doff,
        "decomp_data": ddata,
        "comp_first": cf,
        "comp_second": cs,
        "comp_result": cr,
        "meta": np.array(f"probed from tokenizers {tokenizers.__version__}"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "pythia_data/data/unicode_tables.npz"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args(argv)
    tables = build_tables()
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **tables)
    tmp.replace(args.out)
    cls, ccc = tables["cls"], tables["ccc"]
    print(
        f"{args.out}: L={int((cls & 1).astype(bool).sum())} N={int((cls & 2).astype(bool).sum())} "
        f"WS={int((cls & 4).astype(bool).sum())} marks={int((ccc > 0).sum())} "
        f"decomposing={tables['decomp_cp'].size} pairs={tables['comp_first'].size} "
        f"({args.out.stat().st_size} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
