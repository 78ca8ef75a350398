"""Plain-Python references for the batch tests (and tests of those references).

``neox_reference`` is a deliberately simple re-statement of DESIGN.md §4 (GPT-NeoX v1.0
index mappings), checked here against ``reference/neox_known_answers.json``; it lets the
batch tests run without ``pythia_data.order``. ``neox_sample`` builds one sample the way
GPT-NeoX's ``GPT2Dataset.__getitem__`` does: by concatenating document slices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pythia_data.dataset import DatasetBuilder

# GPT-NeoX's own answers: ../shared/reference when present (CI), else the copy in tests/data
KNOWN = next((p for p in (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "neox_known_answers.json",
    Path(__file__).resolve().parent / "data" / "neox_known_answers.json",
) if p.is_file()), Path(__file__).resolve().parent / "data" / "neox_known_answers.json")


@dataclass
class RefParams:
    train_iters: int
    batch_size: int
    seq_length: int
    seed: int

    @property
    def num_samples(self) -> int:
        return math.ceil(self.train_iters * self.batch_size * 1.005)


@dataclass
class RefOrder:
    """What BatchReader needs from an order: the three arrays (+ params)."""

    doc_idx: np.ndarray
    sample_idx: np.ndarray
    shuffle_idx: np.ndarray
    params: RefParams | None = None


def neox_reference(sizes, seq_length: int, seed: int, num_samples: int):
    """(doc_idx int32, sample_idx int32 (n+1, 2), shuffle_idx uint32, num_epochs)."""
    sizes = [int(s) for s in sizes]
    tokens_per_epoch = sum(sizes)
    epochs = 1
    while (epochs * tokens_per_epoch - 1) // seq_length < num_samples:
        epochs += 1
    total = (epochs * tokens_per_epoch - 1) // seq_length
    rng = np.random.RandomState(seed)
    doc_idx = np.array(list(range(len(sizes))) * epochs, dtype=np.int32)
    rng.shuffle(doc_idx)
    rows = [(0, 0)]
    pos, off = 0, 0
    for _ in range(total):
        need = seq_length + 1  # the end offset is inclusive; the next sample starts there
        while True:
            left = sizes[doc_idx[pos]] - off
            if need <= left:
                off += need - 1
                break
            need -= left
            pos += 1
            off = 0
        rows.append((pos, off))
    sample_idx = np.array(rows, dtype=np.int32)
    shuffle_idx = np.arange(total, dtype=np.uint32)
    rng.shuffle(shuffle_idx)
    return doc_idx, sample_idx, shuffle_idx, epochs


def neox_sample(documents, doc_idx, sample_idx, shuffle_idx, i: int) -> np.ndarray:
    """Sample ``i`` by concatenating document slices (GPT2Dataset.__getitem__'s method)."""
    j = int(shuffle_idx[i])
    p0, o0 = (int(v) for v in sample_idx[j])
    p1, o1 = (int(v) for v in sample_idx[j + 1])
    if p0 == p1:
        return np.asarray(documents[doc_idx[p0]][o0 : o1 + 1])
    parts = [documents[doc_idx[p0]][o0:]]
    parts += [documents[doc_idx[p]] for p in range(p0 + 1, p1)]
    parts.append(documents[doc_idx[p1]][: o1 + 1])
    return np.concatenate(parts)


def make_documents(sizes) -> list[np.ndarray]:
    """Token p of document d is d*100 + p (as in the known answers)."""
    return [np.arange(s, dtype=np.int64) + 100 * d for d, s in enumerate(sizes)]


def write_documents(prefix, documents, dtype=np.uint16) -> str:
    with DatasetBuilder(str(prefix), dtype=dtype) as builder:
        for doc in documents:
            builder.add_document(np.asarray(doc, dtype=dtype))
    return str(prefix)


def reference_order(sizes, train_iters, batch_size, seq_length, seed) -> RefOrder:
    params = RefParams(train_iters, batch_size, seq_length, seed)
    doc_idx, sample_idx, shuffle_idx, _ = neox_reference(
        sizes, seq_length, seed, params.num_samples
    )
    return RefOrder(doc_idx, sample_idx, shuffle_idx, params)


# --------------------------------------------------------------------------- the reference


def _cases():
    if not KNOWN.is_file():
        return []
    return json.loads(KNOWN.read_text())["cases"]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"sl{c['seq_length']}-s{c['seed']}")
def test_reference_matches_neox_known_answers(case):
    sizes = json.loads(KNOWN.read_text())["sizes"]
    doc_idx, sample_idx, shuffle_idx, epochs = neox_reference(
        sizes, case["seq_length"], case["seed"], case["num_samples"]
    )
    assert epochs == case["num_epochs"]
    assert doc_idx.tolist() == case["doc_idx"]
    assert sample_idx.tolist() == case["sample_idx"]
    assert shuffle_idx.tolist() == case["shuffle_idx"]
    docs = make_documents(sizes)
    for i, expected in enumerate(case["first_samples"]):
        assert neox_sample(docs, doc_idx, sample_idx, shuffle_idx, i).tolist() == expected


def test_reference_samples_have_seq_length_plus_one_tokens():
    sizes = [3, 1, 7, 2, 9, 4, 1, 1, 12]
    doc_idx, sample_idx, shuffle_idx, _ = neox_reference(sizes, 5, 7, 6)
    docs = make_documents(sizes)
    for i in range(len(shuffle_idx)):
        assert len(neox_sample(docs, doc_idx, sample_idx, shuffle_idx, i)) == 6
