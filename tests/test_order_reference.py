"""A plain reference of GPT-NeoX v1.0's index mappings, written from DESIGN.md section 4
(numpy's RandomState, np.mgrid, a Python sample walk), and its own known-answer tests.

The fast paths in pythia_data.order / pythia_data.kernels.order are tested against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def known_answers() -> dict:
    with open(DATA / "neox_known_answers.json") as f:
        return json.load(f)


def ref_num_epochs(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    epochs = 0
    total = 0
    while True:
        epochs += 1
        total += tokens_per_epoch
        if (total - 1) // seq_length >= num_samples:
            return epochs


def ref_sample_walk(sizes, doc_idx, seq_length: int, num_samples: int) -> np.ndarray:
    rows = [(0, 0)]
    pos, offset = 0, 0
    for _ in range(num_samples):
        remaining = seq_length + 1
        while remaining:
            length = int(sizes[doc_idx[pos]]) - offset
            remaining -= length
            if remaining <= 0:
                offset += remaining + length - 1
                remaining = 0
            else:
                pos += 1
                offset = 0
        rows.append((pos, offset))
    return np.array(rows, dtype=np.int32)


def ref_index_mappings(sizes, num_samples: int, seq_length: int, seed: int):
    sizes = np.asarray(sizes, dtype=np.int32)
    tokens = int(np.sum(sizes, dtype=np.int64))
    epochs = ref_num_epochs(tokens, seq_length, num_samples)
    rng = np.random.RandomState(seed=seed)
    doc_idx = np.mgrid[0:epochs, 0 : len(sizes)][1].reshape(-1).astype(np.int32)
    rng.shuffle(doc_idx)
    total = (epochs * tokens - 1) // seq_length
    sample_idx = ref_sample_walk(sizes, doc_idx, seq_length, total)
    dtype = np.uint32 if total < np.iinfo(np.uint32).max - 1 else np.int64
    shuffle_idx = np.arange(total, dtype=dtype)
    rng.shuffle(shuffle_idx)
    return doc_idx, sample_idx, shuffle_idx, epochs


def ref_sample_tokens(sizes, doc_idx, sample_idx, shuffle_idx, i, base: int = 100):
    """Tokens of training sample i when token p of document d is d*base + p."""
    j = int(shuffle_idx[i])
    (p0, o0), (p1, o1) = sample_idx[j], sample_idx[j + 1]
    out = []
    for p in range(int(p0), int(p1) + 1):
        d = int(doc_idx[p])
        lo = int(o0) if p == p0 else 0
        hi = int(o1) + 1 if p == p1 else int(sizes[d])
        out.extend(d * base + t for t in range(lo, hi))
    return out


def test_reference_matches_known_answers():
    ka = known_answers()
    for case in ka["cases"]:
        doc_idx, sample_idx, shuffle_idx, epochs = ref_index_mappings(
            ka["sizes"], case["num_samples"], case["seq_length"], case["seed"]
        )
        assert epochs == case["num_epochs"]
        assert doc_idx.tolist() == case["doc_idx"]
        assert sample_idx.tolist() == case["sample_idx"]
        assert shuffle_idx.tolist() == case["shuffle_idx"]
        for i, want in enumerate(case["first_samples"]):
            got = ref_sample_tokens(ka["sizes"], doc_idx, sample_idx, shuffle_idx, i)
            assert got == want
            assert len(got) == case["seq_length"] + 1


def test_pythia_num_samples():
    assert math.ceil(143000 * 1024 * 1.0 * 1.005) == 147_164_160
