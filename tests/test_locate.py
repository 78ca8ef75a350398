"""``TrainingOrder.locate`` and the ``locate`` command against a scan of every batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.cli.app import cli
from pythia_data.dataset import write_dataset
from pythia_data.errors import UsageError
from pythia_data.order import OrderParams, TrainingOrder
from tests.conftest import position_docs
from tests.test_order_reference import known_answers, ref_index_mappings, ref_sample_tokens


def scan_oracle(sizes, params: OrderParams, document: int):
    """Every (sample, first index in sample, token values) where `document` occurs, by
    expanding every sample's tokens (token p of document d is d*1000 + p)."""
    d_idx, s_idx, sh_idx, _ = ref_index_mappings(sizes, params.num_samples, params.seq_length,
                                                 params.seed)
    hits = []
    for i in range(len(sh_idx)):
        tokens = ref_sample_tokens(sizes, d_idx, s_idx, sh_idx, i, base=1000)
        k = 0
        while k < len(tokens):
            if tokens[k] // 1000 == document:
                start = k
                while k < len(tokens) and tokens[k] // 1000 == document and (
                    k == start or tokens[k] == tokens[k - 1] + 1
                ):
                    k += 1
                hits.append((i, start, k, tokens[start] % 1000, tokens[k - 1] % 1000 + 1))
            else:
                k += 1
    return hits


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.one_of(st.integers(0, 4), st.integers(5, 60)), min_size=2, max_size=12),
    seq=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
    iters=st.integers(1, 30),
    batch=st.integers(1, 4),
    data=st.data(),
)
def test_locate_matches_scan_of_all_samples(sizes, seq, seed, iters, batch, data):
    sizes = np.array(sizes, dtype=np.int32)
    sizes[0] += 2
    params = OrderParams(train_iters=iters, batch_size=batch, seq_length=seq, seed=seed)
    document = data.draw(st.integers(0, len(sizes) - 1))
    order = TrainingOrder.build(sizes, params)
    got = order.locate(document)
    want = scan_oracle(sizes, params, document)
    # two copies of a document next to each other stay two hits: token numbers restart
    assert [(h["sample"], h["sample_tokens"][0], h["sample_tokens"][1],
             h["doc_tokens"][0], h["doc_tokens"][1]) for h in got] == want
    for h in got:
        assert h["iteration"] == h["sample"] // batch
        assert h["batch_position"] == h["sample"] % batch
        assert h["trained"] == (h["sample"] < iters * batch)
        assert order.doc_idx[h["doc_position"]] == document
    occurrences = {h["occurrence"] for h in got}
    assert occurrences <= set(range(order.num_epochs))


def test_locate_known_answer_first_sample():
    ka = known_answers()
    case = ka["cases"][0]  # first sample: doc 1 tokens 9..16, doc 4, doc 11 tokens 0..3, ...
    sizes = np.array(ka["sizes"], dtype=np.int32)
    order = TrainingOrder.build(sizes, OrderParams(19, 1, case["seq_length"], case["seed"]))
    first = case["first_samples"][0]
    hits = [h for h in order.locate(1) if h["sample"] == 0]
    assert hits and hits[0]["sample_tokens"] == [0, 8] and hits[0]["doc_tokens"] == [9, 17]
    assert first[:8] == [100 + t for t in range(9, 17)]
    hit4 = [h for h in order.locate(4) if h["sample"] == 0]
    assert first[8] == 400
    assert hit4[0]["sample_tokens"] == [8, 9] and hit4[0]["doc_tokens"] == [0, 1]


def test_locate_errors_and_empty():
    sizes = np.array([5, 0, 7], dtype=np.int32)
    order = TrainingOrder.build(sizes, OrderParams(2, 2, 4, 1))
    assert order.locate(1) == []  # an empty document is never trained on
    with pytest.raises(UsageError):
        order.locate(3)
    with pytest.raises(UsageError):
        order.locate(-1)


def test_locate_cli(tmp_path):
    sizes = [5, 17, 3, 40, 1, 9, 26, 12]
    prefix = write_dataset(tmp_path / "d", position_docs(sizes), dtype=np.uint16)
    opts = ["--train-iters", "10", "--batch-size", "4", "--seq-length", "8", "--seed", "9"]
    result = CliRunner().invoke(cli, ["locate", prefix, "-d", "3", "--json", *opts])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    order = TrainingOrder.build(prefix, OrderParams(10, 4, 8, 9))
    want = [h for h in order.locate(3) if h["trained"]]
    assert out["hits"] == want and out["size"] == 40 and want
    text = CliRunner().invoke(cli, ["locate", prefix, "-d", "3", *opts])
    assert text.exit_code == 0
    assert len(text.stdout.strip().splitlines()) == len(want) + 1
    every = CliRunner().invoke(cli, ["locate", prefix, "-d", "3", "--all", "--json", *opts])
    assert len(json.loads(every.stdout)["hits"]) == len(order.locate(3))
    bad = CliRunner().invoke(cli, ["locate", prefix, "-d", "99", *opts])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    neg = CliRunner().invoke(cli, ["locate", prefix, "-d", "-1", *opts])
    assert neg.exit_code == 2
