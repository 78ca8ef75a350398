"""``pythia-data find`` and ``pythia-data stats`` through the CLI: output shapes, careless
users (one line, exit 2), stats against plain numpy over the same rows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.find import find, stats
from pythia_data.order import BatchReader, OrderParams, TrainingOrder
from tests.conftest import subprocess_env

ORDER = ["--train-iters", "6", "--batch-size", "2", "--seq-length", "8", "--seed", "7"]
PARAMS = OrderParams(train_iters=6, batch_size=2, seq_length=8, seed=7)


@pytest.fixture
def data(tmp_path):
    rng = np.random.RandomState(0)
    docs = []
    for n in (9, 14, 3, 22, 6, 11, 17, 5):
        d = rng.randint(1, 6, size=n).astype(np.uint16)
        d[-1] = 0
        docs.append(d)
    return write_dataset(tmp_path / "d", docs), tmp_path


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_find_json_has_the_promised_keys_and_matches_the_api(data):
    prefix, tmp = data
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--tokens", "1,2", "--json",
                    "-q")
    assert code == 0, out
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows
    for r in rows:
        assert {"iteration", "index_in_batch", "offset", "document", "query"} <= set(r)
        assert r["query"] == "1,2"
    api = [h.to_dict() for h in find(prefix, tokens=[1, 2], params=PARAMS, index_dir=tmp)]
    assert rows == api
    # the table: a header, then one line per hit
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--tokens", "1,2", "-q")
    assert code == 0 and out.splitlines()[0].startswith("# iteration")
    assert len(out.splitlines()) == len(rows) + 1


@pytest.mark.parametrize("args, message", [
    (["--text", ""], "empty"),
    (["--tokens", ""], "empty"),
    (["--tokens", "1,,2"], "empty item"),
    (["--tokens", "a,b"], "not an integer"),
    (["--tokens", "-1"], "negative"),
    (["--tokens", "70000"], "does not fit"),
    ([], "give --text, --tokens or --queries"),
    (["--tokens", "1", "--limit", "-1"], "--limit"),
    (["--tokens", "1", "--queries", "/nonexistent/q.txt"], "no queries file"),
    (["--tokens", "1", "--order", "preshuffled"], "not a preshuffled"),
    (["--tokens", "1", "--batch-size", "0"], "--batch-size"),
])
def test_careless_find_gets_one_line_and_exit_2(data, args, message):
    prefix, tmp = data
    code, out = run("find", prefix, *ORDER[:2], "--index-dir", tmp, *args)
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1 and message in out, out
    assert "Traceback" not in out


def test_ids_outside_the_tokenizers_vocabulary(data):
    pytest.importorskip("tokenizers")
    prefix, tmp = data
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--tokens", "1,50300",
                    "--tokenizer", "bundled", "--backend", "hf")
    assert code == 2 and "outside the tokenizer's vocabulary" in out, out
    assert len(out.strip().splitlines()) == 1


def test_careless_find_missing_data_and_empty_queries_file(tmp_path, data):
    prefix, tmp = data
    code, out = run("find", tmp_path / "nothing", "--tokens", "1")
    assert code == 2 and "no dataset" in out and len(out.strip().splitlines()) == 1
    empty = tmp_path / "q.txt"
    empty.write_text("\n\n")
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--queries", empty)
    assert code == 2 and "holds no queries" in out
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"tokens": [1, "x"]}\n')
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--queries", bad)
    assert code == 2 and "q.jsonl:1" in out


def test_huge_limit_and_tokens_file(data, tmp_path):
    prefix, tmp = data
    q = tmp_path / "q.jsonl"
    q.write_text('{"tokens": [1, 2]}\n{"tokens": [3]}\n')
    code, out = run("find", prefix, *ORDER, "--index-dir", tmp, "--queries", q, "--json",
                    "--limit", 10**18, "-q")
    assert code == 0, out
    rows = [json.loads(x) for x in out.splitlines()]
    assert {r["query"] for r in rows} == {"1,2", "3"}
    its = [(r["iteration"], r["index_in_batch"], r["offset"]) for r in rows]
    assert its == sorted(its)


def test_text_query_searches_the_leading_space_variant_and_says_which(tmp_path):
    pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer

    tok = load_tokenizer(backend="hf")
    texts = ["Hello world, this is it.", "We say hello world again and again and again."]
    docs = [np.append(tok.encode(t), 0).astype(np.uint16) for t in texts]
    prefix = write_dataset(tmp_path / "t", docs)
    params = OrderParams(train_iters=4, batch_size=2, seq_length=16, seed=1)
    hits = list(find(prefix, "hello world", tokenizer=tok, params=params, index_dir=tmp_path))
    assert hits and {h.variant for h in hits} == {"leading space"}
    hits = list(find(prefix, "Hello world", tokenizer=tok, params=params, index_dir=tmp_path))
    assert {h.variant for h in hits} == {"as given"}
    code, out = run("find", prefix, "--train-iters", 4, "--batch-size", 2, "--seq-length", 16,
                    "--seed", 1, "--index-dir", tmp_path, "--text", "hello world",
                    "--backend", "hf", "--json", "-q")
    assert code == 0, out
    assert {json.loads(x)["variant"] for x in out.splitlines()} == {"leading space"}


def test_stats_of_iterations_equal_numpy_over_the_rows(data):
    prefix, tmp = data
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, PARAMS, index_dir=tmp)
        rows = BatchReader(ds, order).read_samples(np.arange(2 * 2, 5 * 2))  # its 2..4
        s = stats(ds, start_iteration=2, end_iteration=4, params=PARAMS, index_dir=tmp,
                  top=3)
    assert s.rows == 6 and s.tokens == rows.size
    counts = np.bincount(rows.reshape(-1))
    assert s.eod_tokens == counts[0]
    assert [t["count"] for t in s.top_tokens] == sorted(counts, reverse=True)[:3]
    per_row = (rows == 0).sum(axis=1)
    assert s.eod_per_row["max"] == per_row.max() and s.eod_per_row["min"] == per_row.min()
    # pieces: runs ending at an EOD (inclusive) or at the row's end, by plain Python
    pieces = []
    for row in rows.tolist():
        run = 0
        for t in row:
            run += 1
            if t == 0:
                pieces.append(run)
                run = 0
        if run:
            pieces.append(run)
    want = {}
    for n in pieces:
        lo = 1 << (n.bit_length() - 1)
        want[lo] = want.get(lo, 0) + 1
    assert {h["lo"]: h["count"] for h in s.doc_length_histogram} == want
    assert sum(b["count"] * 1 for b in s.eod_per_row["histogram"]) == 6


def test_stats_of_the_data_file_and_frequency(data):
    prefix, tmp = data
    s = stats(prefix, top=50, params=PARAMS, index_dir=tmp, tokens=[[1, 2]], bins=3)
    with IndexedDataset(prefix) as ds:
        all_tokens = ds.read_tokens(0, ds.num_tokens)
        assert s.tokens == ds.num_tokens and s.documents == len(ds)
        assert sum(b["count"] for b in s.doc_length_histogram) == len(ds)
    counts = np.bincount(all_tokens)
    assert {t["id"]: t["count"] for t in s.top_tokens} == {
        i: int(c) for i, c in enumerate(counts) if c}
    hits = list(find(prefix, tokens=[1, 2], params=PARAMS, index_dir=tmp))
    starts = [h for h in hits if h.part is None or h.part[0] == 0]
    assert s.frequency["total"] == len(starts)
    assert [b["start_iteration"] for b in s.frequency["bins"]] == [0, 2, 4]


def test_stats_cli_table_json_and_careless(data, tmp_path):
    prefix, tmp = data
    code, out = run("stats", prefix, *ORDER, "--index-dir", tmp, "-s", 0, "-e", 2,
                    "--no-decode", "-q")
    assert code == 0 and "EOD per row" in out and "top tokens" in out, out
    code, out = run("stats", prefix, *ORDER, "--index-dir", tmp, "--json", "--no-decode",
                    "--tokens", "1,2")
    assert code == 0, out
    r = json.loads(out.splitlines()[-1])
    assert r["scope"] == "dataset" and r["frequency"]["total"] >= 0
    code, out = run("stats", prefix, *ORDER, "--index-dir", tmp, "-s", 99, "--no-decode")
    assert code == 2 and "past the end" in out and len(out.strip().splitlines()) == 1
    code, out = run("stats", tmp_path / "missing", "--no-decode")
    assert code == 2 and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_stats_plot(data, tmp_path):
    pytest.importorskip("matplotlib")
    prefix, tmp = data
    png = tmp_path / "s.png"
    code, out = run("stats", prefix, *ORDER, "--index-dir", tmp, "-s", 0, "-e", 5,
                    "--tokens", "1,2", "--plot", png, "--no-decode", "-q")
    assert code == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out = run("stats", prefix, *ORDER, "--index-dir", tmp, "--plot", png, "--no-decode")
    assert code == 2 and "--force" in out


def test_find_in_a_real_process(data):
    prefix, tmp = data
    proc = subprocess.run(
        [sys.executable, "-m", "pythia_data", "find", str(prefix), *ORDER, "--index-dir",
         str(tmp), "--tokens", "1,2", "--limit", "2", "--json"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    assert "2 hits" in proc.stderr



@pytest.mark.slow
@pytest.mark.parametrize("backend, loaded", [("cpu", False), ("cuda", True)])
def test_find_leaves_numba_extensions_unloaded_except_for_cuda(backend, loaded):
    """find/stats mark numba's extension entry points as done before numba's first compile
    (their kernels need none); with the cuda backend numba loads them as usual."""
    code = ("from numba.core import entrypoints as e; "
            "from pythia_data.cli.find_cmds import _without_numba_extensions as w; "
            f"w({backend!r}); print(e._already_initialized)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True)
    assert out.stdout.strip() == str(not loaded)
