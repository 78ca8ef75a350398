"""`pythia-data batches` through click's CliRunner, main() and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.batches import BatchReader
from pythia_data.cli import cli, main
from pythia_data.dataset import IndexedDataset
from tests.conftest import subprocess_env
from tests.test_batches_support import (
    make_documents,
    neox_sample,
    reference_order,
    write_documents,
)

SIZES = [5, 17, 3, 40, 1, 9, 26, 12, 7, 2, 31, 4, 15, 8, 22, 6, 11, 3, 19, 10]
NEOX = ["--train-iters", "5", "--batch-size", "4", "--seq-length", "8"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_main(capsys, *args):
    """Through main(): the exit code and stderr a user sees."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code, capsys.readouterr().err


@pytest.fixture
def pre(tmp_path):
    """Preshuffled: 8 iterations of 3 sequences of 7 tokens (seq_length 6); token s*100+p."""
    docs = [np.arange(7) + 100 * s for s in range(24)]
    return write_documents(tmp_path / "pre", docs, np.uint16), np.stack(docs)


@pytest.fixture
def docs(tmp_path):
    return write_documents(tmp_path / "docs", make_documents(SIZES)), make_documents(SIZES)


def test_preshuffled_npy(tmp_path, pre):
    prefix, full = pre
    out = tmp_path / "b.npy"
    args = ("batches", prefix, "-s", 2, "-e", 4, "--batch-size", 3, "--seq-length", 6)
    result = run(*args, "-o", out)
    assert result.exit_code == 0, result.output
    assert "9 sequences x 7 tokens" in result.stdout and "preshuffled" in result.stdout
    arr = np.load(out)
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, full[6:15])
    result = run(*args, "-o", out, "--json", "--window", "1:3", "--rank", 1, "--world-size", 3,
                 "--force")
    summary = json.loads(result.stdout)
    assert summary["rows"] == 3 and summary["width"] == 3 and summary["order"] == "preshuffled"
    np.testing.assert_array_equal(np.load(out), full[[7, 10, 13], 1:4])


def test_single_iteration_to_stdout_raw(pre):
    prefix, full = pre
    result = run("batches", prefix, "-s", 5, "--batch-size", 3, "--seq-length", 6)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == full[15:18].astype("<u2").tobytes()


def test_stdout_npy_and_jsonl(pre):
    prefix, full = pre
    base = ("batches", prefix, "-s", 1, "-e", 2, "--batch-size", 3, "--seq-length", 6)
    result = run(*base, "--format", "npy")
    import io

    np.testing.assert_array_equal(np.load(io.BytesIO(result.stdout_bytes)), full[3:9])
    result = run(*base, "--format", "jsonl", "--window", "0:2")
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["iteration"], o["index_in_batch"], o["sample"]) for o in objs] == [
        (1, 0, 3),
        (1, 1, 4),
        (1, 2, 5),
        (2, 0, 6),
        (2, 1, 7),
        (2, 2, 8),
    ]
    assert [o["tokens"] for o in objs] == full[3:9, :2].tolist()


def test_neox_order(tmp_path, docs):
    prefix, documents = docs
    out = tmp_path / "n.npy"
    result = run("batches", prefix, *NEOX, "--index-dir", tmp_path, "-s", 1, "-e", 2, "-o", out)
    assert result.exit_code == 0, result.output
    assert "neox order" in result.stdout
    order = reference_order(SIZES, 5, 4, 8, 1234)
    want = np.stack(
        [
            neox_sample(documents, order.doc_idx, order.sample_idx, order.shuffle_idx, s)
            for s in range(4, 12)
        ]
    )
    np.testing.assert_array_equal(np.load(out), want)


def test_materialize_then_preshuffled_is_identical(tmp_path, docs):
    prefix, _ = docs
    common = ("--index-dir", tmp_path)
    result = run("batches", prefix, *NEOX, *common, "-s", 0, "-e", 4, "-o", tmp_path / "m.bin")
    assert result.exit_code == 0, result.output
    with IndexedDataset(tmp_path / "m") as m:
        assert m.sizes.tolist() == [9] * 20
    for k in range(5):
        a = run("batches", prefix, *NEOX, *common, "-s", k, "--order", "neox")
        b = run("batches", tmp_path / "m", *NEOX, "-s", k, "--order", "preshuffled")
        c = run("batches", tmp_path / "m.bin", "--batch-size", 4, "--seq-length", 8, "-s", k)
        assert a.exit_code == b.exit_code == c.exit_code == 0
        assert len(a.stdout_bytes) == 4 * 9 * 2
        assert a.stdout_bytes == b.stdout_bytes == c.stdout_bytes
    # the same through the library, rank slices included
    with IndexedDataset(prefix) as ds, IndexedDataset(tmp_path / "m") as m:
        order = reference_order(SIZES, 5, 4, 8, 1234)
        for rank in range(2):
            x = BatchReader(ds, order, rank=rank, world_size=2)
            y = BatchReader(m, None, batch_size=4, seq_length=8, rank=rank, world_size=2)
            for k in range(5):
                np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("-s", 8, "-e", 8), "past the end"),
        (("-s", 2, "-e", 9), "past the end"),
        (("-s", 3, "-e", 2), "after end"),
        (("-s", -1), "-1"),
        (("-s", 0, "-e", -2), "-2"),
        (("-s", 0, "--window", "5:3"), "window"),
        (("-s", 0, "--window", "7:1"), "window"),
        (("-s", 0, "--window", "x"), "window"),
        (("-s", 0, "--rank", 3, "--world-size", 3), "rank"),
        (("-s", 0, "--rank", -1, "--world-size", 3), "rank"),
        (("-s", 0, "--format", "bin"), "bin"),
        (("-s", 2, "--order", "neox", "--train-iters", 2), "past the end"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, pre, extra, needle):
    prefix, _ = pre
    code, err = run_main(capsys, "batches", prefix, "--batch-size", 3, "--seq-length", 6, *extra)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pythia-data:")
    assert needle in err


def test_not_preshuffled_with_forced_order(capsys, docs):
    prefix, _ = docs
    code, err = run_main(
        capsys,
        "batches",
        prefix,
        "-s",
        0,
        "--order",
        "preshuffled",
        "--batch-size",
        2,
        "--seq-length",
        4,
    )
    assert code == 2 and "not a preshuffled dataset" in err and err.count("\n") == 1


def test_failure_leaves_no_file(tmp_path, docs):
    prefix, _ = docs
    out = tmp_path / "x.npy"
    result = run(
        "batches",
        prefix,
        "--order",
        "preshuffled",
        "--batch-size",
        2,
        "--seq-length",
        4,
        "-s",
        0,
        "-o",
        out,
    )
    assert result.exit_code != 0
    assert not out.exists() and not (tmp_path / "x.npy.partial").exists()


def test_subprocess_one_line_error(pre):
    prefix, _ = pre
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pythia_data",
            "batches",
            prefix,
            "--batch-size",
            "3",
            "--seq-length",
            "6",
            "-s",
            "4",
            "-e",
            "99",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "past the end" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--window", "0:1000"]], ids=["file-copy", "chunks"])
def test_real_pipe_into_head_ends_quietly(tmp_path, extra):
    # 4 iterations x 64 sequences x 1025 uint16 tokens: ~0.5 MB, more than a pipe holds
    docs = [np.full(1025, s % 60000) for s in range(256)]
    prefix = write_documents(tmp_path / "big", docs, np.uint16)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pythia_data",
            "batches",
            prefix,
            "--batch-size",
            "64",
            "--seq-length",
            "1024",
            "-s",
            "0",
            "-e",
            "3",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    head = subprocess.run(["head", "-c", "100"], stdin=writer.stdout, capture_output=True)
    writer.stdout.close()
    err = writer.stderr.read()
    writer.stderr.close()
    assert writer.wait(timeout=120) == 0
    assert err == b""
    assert head.stdout == np.zeros(50, dtype="<u2").tobytes()
