"""Text views of batches (``--format text``, jsonl ``text``) and the Parquet sink."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.batches import BatchReader, open_sink, write_batches
from pythia_data.cli import cli
from pythia_data.dataset import DatasetBuilder, IndexedDataset
from pythia_data.errors import OutputError, UsageError
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import read_documents

pytest.importorskip("tokenizers", reason="decoding uses the hf backend")

MULTI = Path(__file__).resolve().parent / "data" / "multilingual.jsonl"
SEQ = 8  # rows of 9 tokens
BATCH = 4
PRE = ["--batch-size", BATCH, "--seq-length", SEQ]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def hf():
    return load_tokenizer(backend="hf")


@pytest.fixture(scope="module")
def pre(tmp_path_factory, hf):
    """A preshuffled-style dataset (rows of SEQ+1 tokens) cut from real multilingual text."""
    texts = [d.text for d in read_documents([MULTI])]
    ids, _ = hf.encode_flat(texts)
    n = ids.size // (SEQ + 1) // BATCH * BATCH
    rows = ids[: n * (SEQ + 1)].reshape(n, SEQ + 1).astype(np.uint16)
    prefix = tmp_path_factory.mktemp("pre") / "pre"
    with DatasetBuilder(prefix, np.uint16) as b:
        for row in rows:
            b.add_document(row)
    return str(prefix), rows


def test_text_format(tmp_path, hf, pre):
    prefix, rows = pre
    out = tmp_path / "b.txt"
    result = run("batches", prefix, *PRE, "-s", 2, "-e", 3, "-o", out, "--tokenizer", "bundled",
                 "--backend", "hf")
    assert result.exit_code == 0, result.output
    expected = "".join(
        f"# iteration {k} row {r}\n{hf.decode(rows[k * BATCH + r])}\n"
        for k in (2, 3) for r in range(BATCH))
    assert out.read_text(encoding="utf-8") == expected
    # stdout, format from --format
    result = run("batches", prefix, *PRE, "-s", 2, "-e", 3, "--format", "text", "-t", "bundled",
                 "--backend", "hf")
    assert result.exit_code == 0 and result.stdout == expected


def test_text_format_needs_a_tokenizer(tmp_path, pre):
    result = run("batches", pre[0], *PRE, "-s", 0, "-o", tmp_path / "b.txt")
    assert result.exit_code == 2 and "--tokenizer" in result.output
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match="needs a tokenizer"):
        open_sink("text", tmp_path / "x.txt", dtype=np.uint16)
    result = run("batches", pre[0], *PRE, "-s", 0, "-o", tmp_path / "b.npy", "-t", "bundled")
    assert result.exit_code == 2 and "no text" in result.output


def test_jsonl_text_field(tmp_path, hf, pre):
    prefix, rows = pre
    out = tmp_path / "b.jsonl"
    result = run("batches", prefix, *PRE, "-s", 1, "-o", out, "-t", "bundled", "--backend", "hf")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").split("\n") if x]
    assert [list(x) for x in lines] == [["iteration", "index_in_batch", "sample", "text",
                                          "tokens"]] * BATCH
    for r, line in enumerate(lines):
        assert line["tokens"] == rows[BATCH + r].tolist()
        assert line["text"] == hf.decode(rows[BATCH + r])
    plain = run("batches", prefix, *PRE, "-s", 1, "--format", "jsonl")
    assert all("text" not in json.loads(x) for x in plain.stdout.splitlines())


def test_parquet_equals_npy(tmp_path, hf, pre):
    pq = pytest.importorskip("pyarrow.parquet")
    prefix, rows = pre
    npy, par = tmp_path / "b.npy", tmp_path / "b.parquet"
    last = len(rows) // BATCH - 1
    assert run("batches", prefix, *PRE, "-s", 1, "-e", last, "-o", npy).exit_code == 0
    result = run("batches", prefix, *PRE, "-s", 1, "-e", last, "-o", par, "-t", "bundled",
                 "--backend", "hf")
    assert result.exit_code == 0, result.output
    table = pq.read_table(par)
    assert table.column_names == ["uid", "batch_idx", "token_ids", "index_in_batch", "text"]
    kind = table.schema.field("token_ids").type
    assert kind.num_fields == 1 and str(kind.value_type) == "uint16"  # list<uint16>
    arr = np.load(npy)
    got = np.array(table.column("token_ids").to_pylist(), dtype=np.uint16)
    np.testing.assert_array_equal(got, arr)
    n = arr.shape[0]
    assert table.column("uid").to_pylist() == list(range(BATCH, BATCH + n))
    assert table.column("batch_idx").to_pylist() == [1 + i // BATCH for i in range(n)]
    assert table.column("index_in_batch").to_pylist() == [i % BATCH for i in range(n)]
    assert table.column("text").to_pylist() == [hf.decode(r) for r in arr]
    plain = tmp_path / "p.parquet"
    assert run("batches", prefix, *PRE, "-s", 1, "-o", plain).exit_code == 0
    assert pq.read_table(plain).column_names == ["uid", "batch_idx", "token_ids",
                                                 "index_in_batch"]


@pytest.mark.parametrize("window", [None, (1, SEQ)])
def test_parquet_row_groups_are_bounded(tmp_path, pre, window):
    pq = pytest.importorskip("pyarrow.parquet")
    prefix, rows = pre
    width = SEQ + 1 if window is None else SEQ
    with IndexedDataset(prefix) as ds:
        reader = BatchReader(ds, None, batch_size=BATCH, seq_length=SEQ, window=window,
                             chunk_tokens=5 * width)
        write_batches(reader, 0, 2, tmp_path / "c.parquet", row_group_tokens=3 * width)
    meta = pq.ParquetFile(tmp_path / "c.parquet").metadata
    assert meta.num_rows == 3 * BATCH
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) == 3 and sum(sizes) == 3 * BATCH
    got = np.array(pq.read_table(tmp_path / "c.parquet").column("token_ids").to_pylist())
    lo = 0 if window is None else 1
    np.testing.assert_array_equal(got, rows[: 3 * BATCH, lo : lo + width])


def test_parquet_steps_per_file(tmp_path, pre):
    pq = pytest.importorskip("pyarrow.parquet")
    prefix, rows = pre
    folder = tmp_path / "pq"
    last = len(rows) // BATCH - 1
    assert last >= 6
    result = run("batches", prefix, *PRE, "-s", 1, "-e", 6, "-o", folder, "--steps-per-file", 3)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["train-000003.parquet", "train-000006.parquet", "train-000007.parquet"]
    spans = {"train-000003.parquet": (1, 2), "train-000006.parquet": (3, 5),
             "train-000007.parquet": (6, 6)}
    for name, (a, b) in spans.items():
        t = pq.read_table(folder / name)
        assert sorted(set(t.column("batch_idx").to_pylist())) == list(range(a, b + 1))
        got = np.array(t.column("token_ids").to_pylist(), dtype=np.uint16)
        np.testing.assert_array_equal(got, rows[a * BATCH : (b + 1) * BATCH])
        assert t.column("uid").to_pylist() == list(range(a * BATCH, (b + 1) * BATCH))
    with pytest.raises(OutputError, match="already exists"):
        with IndexedDataset(prefix) as ds:
            write_batches(BatchReader(ds, None, batch_size=BATCH, seq_length=SEQ), 0, 2,
                          folder, "parquet", steps_per_file=3, overwrite=False)
    result = run("batches", prefix, *PRE, "-s", 0, "-o", folder, "--steps-per-file", 3,
                 "--format", "npy")
    assert result.exit_code == 2


def test_parquet_abort_leaves_no_file(tmp_path):
    pytest.importorskip("pyarrow")
    target = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError), open_sink("parquet", target, dtype=np.uint16) as sink:
        cols = {"iteration": np.zeros(2, np.int64), "index_in_batch": np.arange(2),
                "sample": np.arange(2)}
        sink.write(np.zeros((2, 3), np.uint16), cols)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_parquet_without_pyarrow_names_the_extra(tmp_path, pre, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = run("batches", pre[0], *PRE, "-s", 0, "-o", tmp_path / "b.parquet")
    assert result.exit_code == 2
    assert "pip install 'pythia-data[parquet]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
