"""TrainingOrder: known answers, the plain reference, cache files and their checks."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.errors import (
    CacheMismatchError,
    ConfigError,
    InputError,
    OutputError,
    UsageError,
)
from pythia_data.order import (
    OrderParams,
    TrainingOrder,
    build_index_mappings,
    cache_paths,
    load_neox_config,
    num_epochs_for,
    verify_cache,
)
from tests.conftest import DATA, position_docs
from tests.test_order_reference import (
    known_answers,
    ref_index_mappings,
    ref_num_epochs,
    ref_sample_tokens,
)

FAST = settings(max_examples=40, deadline=None)
KA = known_answers()
# (train_iters, batch) giving each known-answer case's num_samples through the 1.005 rule
KA_PARAMS = {20: (19, 1), 70: (69, 1), 6: (5, 1)}


def ka_params(case) -> OrderParams:
    iters, batch = KA_PARAMS[case["num_samples"]]
    p = OrderParams(train_iters=iters, batch_size=batch, seq_length=case["seq_length"],
                    seed=case["seed"])
    assert p.num_samples == case["num_samples"]
    return p


@pytest.fixture
def ka_dataset(tmp_path):
    return write_dataset(tmp_path / "ka", position_docs(KA["sizes"]), dtype=np.uint16)


# --------------------------------------------------------------------------- params


def test_pythia_params():
    p = OrderParams()
    assert (p.train_iters, p.batch_size, p.seq_length, p.seed) == (143000, 1024, 2048, 1234)
    assert p.num_samples == 147_164_160 == math.ceil(143000 * 1024 * 1.0 * 1.005)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 2**44))
def test_num_samples_is_neox_float_formula_and_exact_below_2_44(n):
    p = OrderParams(train_iters=n, batch_size=1)
    assert p.num_samples == int(math.ceil(n * 1.0 * 1.005)) == (n * 1005 + 999) // 1000


def test_num_samples_follows_neox_where_float_rounding_differs():
    # found by Hypothesis: exact arithmetic would give ...002, GPT-NeoX computes ...001
    p = OrderParams(train_iters=100_000_000_000_001, batch_size=1)
    assert p.num_samples == 100_500_000_000_001 == math.ceil(p.train_samples * 1.0 * 1.005)


@FAST
@given(tokens=st.integers(1, 10_000), seq=st.integers(1, 500), ns=st.integers(1, 2000))
def test_num_epochs_matches_neox_loop(tokens, seq, ns):
    assert num_epochs_for(tokens, seq, ns) == ref_num_epochs(tokens, seq, ns)


@pytest.mark.parametrize("bad", [
    {"train_iters": 0}, {"batch_size": -1}, {"seq_length": 0}, {"seed": -1},
    {"seed": 2**32}, {"train_iters": 1.5}, {"batch_size": True},
])
def test_params_validate(bad):
    with pytest.raises(UsageError):
        OrderParams(**bad)


def test_from_config_pythia():
    cfg = load_neox_config(DATA / "pythia-160m-deduped.yml")
    assert (cfg.train_iters, cfg.seq_length, cfg.seed) == (143000, 2048, None)  # seed unset
    p = OrderParams.from_config(DATA / "pythia-160m-deduped.yml")
    assert p == OrderParams()
    p = OrderParams.from_config(DATA / "pythia-70m.yml", batch_size=2048, seed=5, train_iters=None)
    assert (p.train_iters, p.batch_size, p.seed) == (143000, 2048, 5)


def test_from_config_keys_and_errors(tmp_path):
    a = tmp_path / "a.yml"
    a.write_text('{"train_iters": 10, "seq-length": 64, "seed": 7, "train_batch_size": 8,}\n')
    p = OrderParams.from_config(a)
    assert (p.train_iters, p.seq_length, p.seed, p.batch_size) == (10, 64, 7, 8)
    b = tmp_path / "b.yml"
    b.write_text('{"train-iters": 12}')
    assert OrderParams.from_config(b).seq_length == 2048  # unset in GPT-NeoX v1.0: Pythia's
    with pytest.raises(ConfigError, match="both"):
        load_neox_config([a, tmp_path / "a.yml"])
    cases = {
        "missing.yml": None,
        "bad.yml": '{"train-iters": 10,,, [',
        "list.yml": "[1, 2]",
        "str.yml": '{"train-iters": "ten"}',
        "neg.yml": '{"seq-length": -4}',
        "split.yml": '{"data-path": "x", "train-iters": 3}',
        "blend.yml": '{"train-data-paths": ["x", "y"], "train-iters": 3}',
        "dup.yml": '{"seq-length": 3, "seq_length": 4}',
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError):
            OrderParams.from_config(tmp_path / name)
    (tmp_path / "noiters.yml").write_text('{"seq-length": 8}')
    with pytest.raises(UsageError, match="train-iters"):
        OrderParams.from_config(tmp_path / "noiters.yml")


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("case", KA["cases"], ids=lambda c: f"sl{c['seq_length']}e{c['num_epochs']}")
def test_known_answers(case, ka_dataset):
    sizes = np.array(KA["sizes"], dtype=np.int32)
    doc_idx, sample_idx, shuffle_idx, epochs, _ = build_index_mappings(
        sizes, case["num_samples"], case["seq_length"], case["seed"])
    assert epochs == case["num_epochs"]
    for name, arr in (("doc_idx", doc_idx), ("sample_idx", sample_idx),
                      ("shuffle_idx", shuffle_idx)):
        assert arr.dtype.str == case["dtypes"][name]
        assert arr.tolist() == case[name]
    # the same through TrainingOrder on a real dataset, and the first samples' tokens
    order = TrainingOrder.build(ka_dataset, ka_params(case), write_cache=False)
    assert order.doc_idx.tolist() == case["doc_idx"]
    with IndexedDataset(ka_dataset) as ds:
        ids = np.arange(len(case["first_samples"]), dtype=np.int64)
        p0, o0, p1, o1 = order.sample_positions(ids)
        starts = ds.token_starts
        for k, want in enumerate(case["first_samples"]):
            tokens = []
            for p in range(int(p0[k]), int(p1[k]) + 1):
                d = int(order.doc_idx[p])
                lo = int(o0[k]) if p == p0[k] else 0
                hi = int(o1[k]) + 1 if p == p1[k] else int(ds.sizes[d])
                tokens.extend(ds.read_tokens(int(starts[d]) + lo, hi - lo).tolist())
            assert tokens == want


sizes_strategy = st.lists(
    st.one_of(st.integers(0, 5), st.integers(1, 40), st.integers(40, 400)),
    min_size=1, max_size=25,
)


@FAST
@given(sizes=sizes_strategy, seq=st.integers(1, 64), seed=st.integers(0, 2**32 - 1),
       extra=st.integers(1, 3))
def test_fast_path_equals_reference(sizes, seq, seed, extra):
    sizes = np.array(sizes, dtype=np.int32)
    sizes[0] += 2  # at least two tokens
    tokens = int(sizes.sum())
    # ask for more samples than one epoch holds -> epochs >= 2
    num_samples = max(1, (tokens - 1) // seq + extra * max(1, tokens // (2 * seq)))
    want = ref_index_mappings(sizes, num_samples, seq, seed)
    got = build_index_mappings(sizes, num_samples, seq, seed)
    assert got[3] == want[3]
    for g, w in zip(got[:3], want[:3]):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    # every sample has seq_length + 1 tokens
    d, s, sh = want[:3]
    for i in range(min(5, len(sh))):
        assert len(ref_sample_tokens(sizes, d, s, sh, i)) == seq + 1


def test_epochs_cover_documents_longer_than_many_samples():
    sizes = np.array([3, 500, 1, 0, 7], dtype=np.int32)
    d, s, sh, e, t = build_index_mappings(sizes, 200, 4, 1)
    want = ref_index_mappings(sizes, 200, 4, 1)
    assert e == want[3] >= 2 and np.array_equal(s, want[1]) and np.array_equal(sh, want[2])


def test_bad_inputs():
    with pytest.raises(InputError):
        build_index_mappings(np.zeros(3, np.int32), 5, 4, 1)
    with pytest.raises(InputError):
        build_index_mappings(np.array([], np.int32), 5, 4, 1)
    with pytest.raises(UsageError):
        build_index_mappings(np.ones(3, np.int64), 5, 4, 1)
    with pytest.raises(UsageError, match="epochs"):
        build_index_mappings(np.ones(2, np.int32), 10**9, 4, 1)
    with pytest.raises(UsageError):
        TrainingOrder.build(object(), OrderParams())


def test_sample_positions():
    sizes = np.array(KA["sizes"], dtype=np.int32)
    case = KA["cases"][0]
    order = TrainingOrder.build(sizes, ka_params(case))
    ids = np.arange(order.total_samples, dtype=np.int64)
    p0, o0, p1, o1 = order.sample_positions(ids)
    rows = np.array(case["shuffle_idx"])
    si = np.array(case["sample_idx"])
    assert p0.dtype == np.int64
    assert np.array_equal(p0, si[rows, 0]) and np.array_equal(o1, si[rows + 1, 1])
    assert np.array_equal(o0, si[rows, 1]) and np.array_equal(p1, si[rows + 1, 0])
    with pytest.raises(UsageError):
        order.sample_positions([order.total_samples])


# --------------------------------------------------------------------------- cache


def test_cache_written_loaded_and_neox_loadable(ka_dataset, tmp_path):
    case = KA["cases"][1]
    params = ka_params(case)
    order = TrainingOrder.build(ka_dataset, params)
    assert order.source == "built"
    paths = cache_paths(ka_dataset, params)
    assert paths["doc_idx"].endswith("ka_train_0_indexmap_70ns_8sl_3s_doc_idx.npy")
    for name in ("doc_idx", "sample_idx", "shuffle_idx"):
        arr = np.load(paths[name], allow_pickle=True)  # as GPT-NeoX loads it
        assert arr.dtype.str == case["dtypes"][name] and arr.tolist() == case[name]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    meta = json.loads(open(paths["meta"]).read())
    assert meta["num_docs"] == 20 and meta["num_epochs"] == 3
    again = TrainingOrder.build(ka_dataset, params)
    assert again.source == "cache"
    assert isinstance(again.shuffle_idx, np.memmap)
    assert again.shuffle_idx.tolist() == case["shuffle_idx"]


def test_index_dir(ka_dataset, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    params = ka_params(KA["cases"][0])
    order = TrainingOrder.build(ka_dataset, params, index_dir=folder)
    assert all(os.path.dirname(p) == str(folder) for p in order.cache_paths.values())
    assert os.path.basename(order.cache_paths["doc_idx"]).startswith("ka_train_0_indexmap_20ns")
    assert TrainingOrder.build(ka_dataset, params, index_dir=folder).source == "cache"


def _neox_cache(prefix, params, case):
    """Cache files as GPT-NeoX writes them: np.save, no sidecar."""
    paths = cache_paths(prefix, params)
    for name in ("doc_idx", "sample_idx", "shuffle_idx"):
        np.save(paths[name], np.array(case[name], dtype=case["dtypes"][name]), allow_pickle=True)
    return paths


def test_neox_cache_without_sidecar_is_used(ka_dataset):
    case = KA["cases"][0]
    params = ka_params(case)
    _neox_cache(ka_dataset, params, case)
    order = TrainingOrder.build(ka_dataset, params)
    assert order.source == "neox-cache"
    assert order.sample_idx.tolist() == case["sample_idx"]


def _corrupt_zero_run(path):
    arr = np.load(path)
    arr[3:9] = 0
    np.save(path, arr)


def _flip_doc(path):
    arr = np.load(path)
    arr[0], arr[1] = arr[1], arr[0]  # still a valid multiset, wrong order
    np.save(path, arr)


def _swap_docs_sample_bad(path):
    arr = np.load(path)
    arr[5, 1] += 1
    np.save(path, arr)


def _wrong_dtype(path):
    np.save(path, np.load(path).astype(np.int64))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(100)


def _drop_entry(path):
    np.save(path, np.load(path)[:-1])


CORRUPTIONS = {
    "shuffle zero run": ("shuffle_idx", _corrupt_zero_run),
    "sample_idx row": ("sample_idx", _swap_docs_sample_bad),
    "doc_idx dtype": ("doc_idx", _wrong_dtype),
    "shuffle dtype": ("shuffle_idx", _wrong_dtype),
    "truncated": ("sample_idx", _truncate),
    "short doc_idx": ("doc_idx", _drop_entry),
}


@pytest.mark.parametrize("sidecar", [True, False], ids=["ours", "neox"])
@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_corrupt_cache_detected(ka_dataset, what, sidecar):
    case = KA["cases"][0]
    params = ka_params(case)
    if sidecar:
        paths = TrainingOrder.build(ka_dataset, params).cache_paths
    else:
        paths = _neox_cache(ka_dataset, params, case)
    name, corrupt = CORRUPTIONS[what]
    corrupt(paths[name])
    with pytest.raises(CacheMismatchError):
        TrainingOrder.build(ka_dataset, params)
    report = verify_cache(ka_dataset, params)
    assert not report["ok"] and not report["arrays"][name]["ok"]
    # --force equivalent: rebuild replaces it
    rebuilt = TrainingOrder.build(ka_dataset, params, use_cache=False)
    assert rebuilt.source == "built"
    assert TrainingOrder.build(ka_dataset, params).source == "cache"


def test_reordered_doc_idx_detected_with_sidecar(ka_dataset):
    params = ka_params(KA["cases"][0])
    paths = TrainingOrder.build(ka_dataset, params).cache_paths
    _flip_doc(paths["doc_idx"])
    with pytest.raises(CacheMismatchError, match="contents"):
        TrainingOrder.build(ka_dataset, params)
    report = verify_cache(ka_dataset, params)
    assert report["arrays"]["doc_idx"]["first_difference"] == 0


def test_sidecar_for_other_data_detected(tmp_path):
    params = OrderParams(train_iters=10, batch_size=2, seq_length=8, seed=1)
    a = write_dataset(tmp_path / "d", position_docs([5, 9, 14, 3]), dtype=np.uint16)
    TrainingOrder.build(a, params)
    keep = {n: p for n, p in cache_paths(a, params).items()}
    for p in keep.values():
        shutil.copy(p, p + ".bak")
    # same prefix, different document sizes, same token count
    os.unlink(a + ".bin")
    os.unlink(a + ".idx")
    write_dataset(tmp_path / "d", position_docs([9, 5, 14, 3]), dtype=np.uint16)
    for p in keep.values():
        shutil.copy(p + ".bak", p)
    with pytest.raises(CacheMismatchError, match="document sizes"):
        TrainingOrder.build(a, params)


def test_verify_reports_first_difference_and_permutation(ka_dataset):
    case = KA["cases"][1]
    params = ka_params(case)
    paths = TrainingOrder.build(ka_dataset, params).cache_paths
    ok = verify_cache(ka_dataset, params)
    assert ok["ok"] and ok["arrays"]["shuffle_idx"]["is_permutation"]
    arr = np.load(paths["shuffle_idx"])
    arr[40:50] = 0
    np.save(paths["shuffle_idx"], arr)
    report = verify_cache(ka_dataset, params)
    entry = report["arrays"]["shuffle_idx"]
    want = int(np.flatnonzero(arr != np.array(case["shuffle_idx"]))[0])
    assert entry["first_difference"] == want
    assert entry["is_permutation"] is False
    assert report["arrays"]["doc_idx"]["ok"] and report["arrays"]["sample_idx"]["ok"]
    os.unlink(paths["doc_idx"])
    assert verify_cache(ka_dataset, params)["arrays"]["doc_idx"]["exists"] is False


@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize("streamed", [True, False])
def test_failed_write_leaves_nothing(ka_dataset, tmp_path, monkeypatch, fail_at, streamed):
    import pythia_data.order.cache as O

    params = ka_params(KA["cases"][0])
    calls = []
    real = O._write_npy

    def flaky(out, chunks, dtype, shape):
        calls.append(out.name)
        digest = real(out, chunks, dtype, shape)
        if len(calls) == fail_at:
            raise OutputError("No space left on device")
        return digest

    monkeypatch.setattr(O, "_write_npy", flaky)
    with pytest.raises(OutputError):
        if streamed:
            TrainingOrder.build(ka_dataset, params)
        else:
            TrainingOrder.build(ka_dataset, params, write_cache=False)._write(
                cache_paths(ka_dataset, params))
    assert sorted(os.listdir(tmp_path)) == ["ka.bin", "ka.idx"]


def test_write_of_in_memory_order(ka_dataset):
    case = KA["cases"][2]
    params = ka_params(case)
    order = TrainingOrder.build(ka_dataset, params, write_cache=False)
    assert order.source == "built" and not os.path.exists(order.cache_paths["doc_idx"])
    order._write(order.cache_paths)
    again = TrainingOrder.build(ka_dataset, params)
    assert again.source == "cache" and again.sample_idx.tolist() == case["sample_idx"]


def test_order_needs_only_the_idx(ka_dataset, tmp_path):
    os.unlink(ka_dataset + ".bin")
    case = KA["cases"][0]
    order = TrainingOrder.build(ka_dataset + ".idx", ka_params(case))
    assert order.sample_idx.tolist() == case["sample_idx"]
    assert order.cache_paths["doc_idx"].startswith(ka_dataset + "_train_0_indexmap_")
    with pytest.raises(InputError):
        TrainingOrder.build(tmp_path / "absent", ka_params(case))


def test_build_from_indexed_dataset_object(ka_dataset):
    case = KA["cases"][2]
    with IndexedDataset(ka_dataset) as ds:
        order = TrainingOrder.build(ds, ka_params(case))
        assert order.cache_paths["meta"].startswith(ds.prefix)
        assert order.shuffle_idx.tolist() == case["shuffle_idx"]
