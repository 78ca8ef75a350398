"""Issue 18, bad input and faults: no data loss through a symlinked output (--force), links in
the index-cache folder never followed, hostile cache files, a device as tokenize input,
unshard refusing for space, the "at at" JSON message. Each is one line and an exit code."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from pythia_data.dataset import write_dataset
from pythia_data.order import order_params
from pythia_data.order.cache import cache_paths
from pythia_data.shards import shard
from tests.conftest import one_line_error, position_docs, run

ORDER = ["--train-iters", "3", "--batch-size", "2", "--seq-length", "8"]


@pytest.fixture
def two(tmp_path):
    a = write_dataset(tmp_path / "a", position_docs([5, 17, 3, 40, 9]))
    b = write_dataset(tmp_path / "b", position_docs([7, 2, 30]))
    return Path(a), Path(b)


def _snapshot(*prefixes):
    return {f"{p}{s}": Path(f"{p}{s}").read_bytes() for p in prefixes for s in (".bin", ".idx")}


# --------------------------------------------------------------------------- data loss


def test_merge_into_a_symlink_to_an_input_is_refused(tmp_path, two):
    a, b = two
    before = _snapshot(a, b)
    (tmp_path / "out.bin").symlink_to(f"{a}.bin")
    (tmp_path / "out.idx").symlink_to(f"{a}.idx")
    one_line_error(run("merge", tmp_path / "out", a, b, "--force"), 2, "is also the input",
                   "through a link")
    assert _snapshot(a, b) == before
    # a hard link is the same file too
    os.unlink(tmp_path / "out.bin")
    os.unlink(tmp_path / "out.idx")
    os.link(f"{b}.bin", tmp_path / "out.bin")
    one_line_error(run("merge", tmp_path / "out", a, b, "--force"), 2, "is also the input")
    assert _snapshot(a, b) == before


def test_retokenize_detokenize_batches_checksum_refuse_their_input(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"text": f"doc {i} " * 5}) + "\n" for i in range(12)))
    assert run("tokenize", src, "-o", tmp_path / "t", "--backend", "hf", "-q").exit_code == 0
    data = tmp_path / "t_text_document"
    before = _snapshot(data)
    (tmp_path / "link_text_document.bin").symlink_to(f"{data}.bin")
    (tmp_path / "link.bin").symlink_to(f"{data}.bin")
    # retokenize -o P writes P_text_document.bin/.idx (the name tokenize gives)
    one_line_error(run("retokenize", data, "-t", "bundled", "-o", tmp_path / "link",
                       "--backend", "hf", "--force"), 2, "is also the input")
    one_line_error(run("detokenize", data, "-o", tmp_path / "link.bin", "--backend", "hf",
                       "--force"), 2, "is also the input")
    one_line_error(run("batches", data, "-s", "0", "-o", tmp_path / "link.bin", "--format",
                       "bin", "--force", "--order", "neox", *ORDER), 2, "is also the input")
    (tmp_path / "m.sha256").symlink_to(src)
    src_bytes = src.read_bytes()
    one_line_error(run("checksum", src, "--write-manifest", tmp_path / "m.sha256", "--force"),
                   2, "is also the input")
    assert src.read_bytes() == src_bytes
    assert _snapshot(data) == before


# --------------------------------------------------------------------------- cache folder


def _paths(prefix, index_dir):
    return cache_paths(str(prefix), order_params(3, 2, 8, None, ()), index_dir)


def test_dangling_symlink_in_the_cache_folder_is_not_followed(tmp_path, two):
    a, _ = two
    idx = tmp_path / "cache"
    idx.mkdir()
    victim = tmp_path / "elsewhere" / "victim.npy"
    victim.parent.mkdir()
    paths = _paths(a, idx)
    Path(paths["doc_idx"]).symlink_to(victim)
    Path(paths["meta"]).symlink_to(tmp_path / "elsewhere" / "victim.json")
    res = run("order", "build", a, "--index-dir", idx, "--force", *ORDER)
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(victim.parent)) == []
    for name in ("doc_idx", "meta"):
        assert not os.path.islink(paths[name]) and os.path.isfile(paths[name])


@pytest.mark.parametrize("case", ["dev-zero", "arrays-list", "nested", "huge"])
def test_hostile_cache_files_are_one_line(tmp_path, two, case):
    a, _ = two
    idx = tmp_path / "cache"
    assert run("order", "build", a, "--index-dir", idx, *ORDER).exit_code == 0
    paths = _paths(a, idx)
    if case == "dev-zero":
        os.unlink(paths["shuffle_idx"])
        os.symlink("/dev/zero", paths["shuffle_idx"])
    else:
        meta = json.loads(Path(paths["meta"]).read_text())
        if case == "arrays-list":
            meta["arrays"] = [1]
            text = json.dumps(meta)
        elif case == "nested":
            text = json.dumps(meta)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
        else:
            text = json.dumps(meta)[:-1] + ', "x": "' + "y" * (2 << 20) + '"}'
        Path(paths["meta"]).write_text(text)
    verify = run("order", "verify", a, "--index-dir", idx, *ORDER)
    assert verify.exit_code in (0, 1), verify.output  # it recomputes; the sidecar is ours
    assert "Traceback" not in verify.output
    batches = run("batches", a, "-s", "0", "-o", tmp_path / "x.npy", "--order", "neox",
                  "--index-dir", idx, *ORDER)
    assert "Traceback" not in batches.output
    if case == "dev-zero":
        # not a complete cache: rebuilt, the link replaced (never written through)
        assert batches.exit_code == 0, batches.output
        assert not os.path.islink(paths["shuffle_idx"])
        assert run("order", "verify", a, "--index-dir", idx, *ORDER).exit_code == 0
    else:
        one_line_error(batches, 1, paths["meta"])


# --------------------------------------------------------------------------- inputs


def test_tokenize_refuses_a_device_input(tmp_path):
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    one_line_error(run("tokenize", link, "-o", tmp_path / "o"), 2, "not a regular file")


def test_json_error_message_says_at_once(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(b'{"text": "a\x01"}\n')
    line = one_line_error(run("tokenize", src, "-o", tmp_path / "o"), 2, f"{src}:1:")
    assert "at at" not in line and "Invalid control character at character 12" in line


# --------------------------------------------------------------------------- unshard


def test_unshard_refusing_for_space_leaves_no_partial(tmp_path, monkeypatch):
    src = write_dataset(tmp_path / "src" / "doc", position_docs([300] * 20))
    out = tmp_path / "shards"
    shard(f"{src}.bin", out, shard_size=3000)
    merged = tmp_path / "merged"
    merged.mkdir()
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 100, 100))
    first = sorted(out.glob("doc-*.bin"))[0]
    res = run("unshard", first, "-o", merged, "-q")
    one_line_error(res, 2, "not enough space")
    assert os.listdir(merged) == []
