"""Issue 18, wrong results and holes: --batch-size 0 / --seq-length 0, checksum DIR with a
manifest beside the files (and one folder walker for checksum and tokenize), locate and
batches agreeing on `--order preshuffled` over document-level data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pythia_data.dataset import write_dataset
from pythia_data.shards import shard
from pythia_data.tokenize.pipeline import expand_inputs
from tests.conftest import one_line_error, position_docs, run

ORDER = ["--train-iters", "3", "--batch-size", "2", "--seq-length", "8"]


# --------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("flag", ["--batch-size", "--seq-length", "--train-iters"])
@pytest.mark.parametrize("command", ["batches", "locate", "order build"])
def test_zero_batch_size_or_seq_length_is_refused(small_dataset, tmp_path, flag, command):
    prefix, _ = small_dataset
    opts = [o for o in ORDER]
    opts[opts.index(flag) + 1] = "0"
    args = {"batches": ["batches", prefix, "-s", "0", "-o", tmp_path / "x.npy"],
            "locate": ["locate", prefix, "-d", "1"],
            "order build": ["order", "build", prefix]}[command]
    res = run(*args, *opts)
    one_line_error(res, 2, flag, "must be >= 1, not 0")
    assert not (tmp_path / "x.npy").exists()


# --------------------------------------------------------------------------- item 3


def test_checksum_dir_uses_the_manifest_beside_the_shards(tmp_path):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 60000, size=n) for n in rng.integers(1, 400, size=60)]
    src = write_dataset(tmp_path / "src" / "doc", docs)
    out = tmp_path / "shards"
    shard(f"{src}.bin", out, shard_size=4000)
    manifests = sorted(out.glob("*.sha256"))
    assert len(manifests) == 1
    res = run("checksum", out)
    assert res.exit_code == 0, res.output
    assert "without an expected" not in res.output
    assert f"expected digests from {manifests[0]}" in res.output
    shards = sorted(out.glob("doc-*.bin"))
    assert len(shards) >= 3
    data = bytearray(shards[1].read_bytes())
    data[17] ^= 0x40
    shards[1].write_bytes(bytes(data))
    res = run("checksum", out)
    assert res.exit_code == 1, res.output
    assert f"{shards[1]}: FAILED" in res.output
    doc = json.loads(run("checksum", out, "--json").output)
    assert doc["manifest"] == str(manifests[0])
    assert {f["name"]: f["status"] for f in doc["files"]}[shards[1].name] == "mismatch"
    # a missing shard is missing, the manifest is not checked as a file
    shards[2].unlink()
    doc = json.loads(run("checksum", out, "--json").output)
    status = {f["name"]: f["status"] for f in doc["files"]}
    assert status[shards[2].name] == "missing" and manifests[0].name not in status


def test_one_walker_for_checksum_and_tokenize(tmp_path):
    root = tmp_path / "corpus"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    files = {"a.jsonl": b'{"text": "a"}\n', "b/deep/c.jsonl": b'{"text": "c"}\n',
             "b/z.txt": b"z", ".hidden/h.jsonl": b'{"text": "h"}\n', ".dot.jsonl": b"{}\n",
             "b/x.jsonl.partial": b"{}\n"}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    seen = [str(p.relative_to(root)) for p in map(__import__("pathlib").Path,
                                                  expand_inputs([root]))]
    assert seen == ["a.jsonl", "b/deep/c.jsonl", "b/z.txt"]
    doc = json.loads(run("checksum", root, "--json").output)
    hashed = sorted(f["path"] for f in doc["files"])
    assert hashed == sorted(str(root / s) for s in seen)
    for f in doc["files"]:
        assert f["digest"] == hashlib.sha256(open(f["path"], "rb").read()).hexdigest()


# --------------------------------------------------------------------------- item 4


def test_locate_and_batches_refuse_preshuffled_alike(tmp_path):
    prefix = write_dataset(tmp_path / "docs", position_docs([348, 9, 9, 9, 9, 9]))
    opts = ["--order", "preshuffled", "--batch-size", "2", "--seq-length", "8"]
    b = run("batches", prefix, "-s", "0", "-o", tmp_path / "x.npy", *opts)
    one_line_error(b, 2, "sequence 0 has 348 tokens")
    loc = run("locate", prefix, "-d", "1", *opts)
    one_line_error(loc, 2, "sequence 0 has 348 tokens")
    # where batches works (iteration 1 = sequences 2, 3), locate answers
    assert run("batches", prefix, "-s", "1", "-o", tmp_path / "y.npy", *opts).exit_code == 0
    hit = json.loads(run("locate", prefix, "-d", "3", "--json", *opts).output)["hits"]
    assert [(h["iteration"], h["batch_position"]) for h in hit] == [(1, 1)]
