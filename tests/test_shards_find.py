"""find_shards: discovery and validation of shard sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pythia_data.errors import ShardError
from pythia_data.shards import find_shards, is_sharded_prefix, parse_shard_name, shard_name


def make_shards(folder: Path, base: str, sizes: list[int], last: int | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    last = len(sizes) - 1 if last is None else last
    paths = []
    pos = 0
    for i, s in enumerate(sizes):
        p = folder / f"{base}-{i:05d}-of-{last:05d}.bin"
        p.write_bytes(bytes((pos + k) % 251 for k in range(s)))
        pos += s
        paths.append(p)
    return paths


def test_names_round_trip():
    assert shard_name("doc", 3, 82) == "doc-00003-of-00082.bin"
    assert parse_shard_name("doc-00003-of-00082.bin") == ("doc", 3, 82)
    assert parse_shard_name("a-b-00000-of-00000.bin") == ("a-b", 0, 0)
    assert parse_shard_name("doc.bin") is None
    assert parse_shard_name("doc-0003-of-00082.bin") is None


@pytest.mark.parametrize("how", ["shard0", "shard_last", "middle", "prefix", "prefix_bin", "folder"])
def test_find_from_any_path(tmp_path, how):
    paths = make_shards(tmp_path / "d", "pile_doc", [10, 10, 10, 4])
    (tmp_path / "d" / "pile_doc.idx").write_bytes(b"x")
    (tmp_path / "d" / "README").write_text("other file")
    arg = {
        "shard0": paths[0],
        "shard_last": paths[-1],
        "middle": paths[2],
        "prefix": tmp_path / "d" / "pile_doc",
        "prefix_bin": tmp_path / "d" / "pile_doc.bin",
        "folder": tmp_path / "d",
    }[how]
    ss = find_shards(arg)
    assert ss.base == str(tmp_path / "d" / "pile_doc")
    assert ss.paths == paths
    assert ss.sizes == [10, 10, 10, 4]
    assert ss.total_bytes == 34
    assert ss.offsets == [0, 10, 20, 30, 34]
    assert ss.last_index == 3 and ss.count == 4
    assert ss.idx_path == tmp_path / "d" / "pile_doc.idx"
    assert is_sharded_prefix(tmp_path / "d" / "pile_doc")


def test_single_shard_and_empty_last(tmp_path):
    make_shards(tmp_path / "a", "x", [7])
    assert find_shards(tmp_path / "a").sizes == [7]
    make_shards(tmp_path / "b", "y", [5, 5, 0])
    assert find_shards(tmp_path / "b" / "y").sizes == [5, 5, 0]


def test_missing_shard(tmp_path):
    paths = make_shards(tmp_path, "doc", [8, 8, 8, 3])
    paths[1].unlink()
    with pytest.raises(ShardError, match=r"missing.*doc-00001-of-00003\.bin"):
        find_shards(paths[0])


def test_missing_last_shard(tmp_path):
    paths = make_shards(tmp_path, "doc", [8, 8, 8, 3])
    paths[-1].unlink()
    with pytest.raises(ShardError, match="doc-00003-of-00003.bin"):
        find_shards(tmp_path / "doc")


def test_extra_shard(tmp_path):
    make_shards(tmp_path, "doc", [8, 8, 3])
    (tmp_path / "doc-00003-of-00002.bin").write_bytes(b"z" * 3)
    with pytest.raises(ShardError, match="doc-00003-of-00002.bin"):
        find_shards(tmp_path)


def test_mis_numbered_shards(tmp_path):
    # the count written where the last index belongs (the --num_shards confusion)
    make_shards(tmp_path, "doc", [8, 8, 3])
    (tmp_path / "doc-00002-of-00003.bin").write_bytes(b"z" * 3)
    with pytest.raises(ShardError, match="disagree"):
        find_shards(tmp_path / "doc-00000-of-00002.bin")


def test_count_used_as_last_index(tmp_path):
    make_shards(tmp_path, "doc", [8, 8, 3], last=3)  # names say -of-00003 but only 3 shards
    with pytest.raises(ShardError, match="missing"):
        find_shards(tmp_path)


def test_duplicate_index_with_more_digits(tmp_path):
    make_shards(tmp_path, "doc", [8, 3])
    (tmp_path / "doc-000001-of-00001.bin").write_bytes(b"z" * 3)
    with pytest.raises(ShardError, match="more than once"):
        find_shards(tmp_path)


def test_short_middle_shard(tmp_path):
    paths = make_shards(tmp_path, "doc", [8, 8, 8, 3])
    with open(paths[1], "r+b") as f:
        f.truncate(7)
    with pytest.raises(ShardError, match="doc-00001-of-00003.bin has 7 bytes"):
        find_shards(tmp_path)


def test_last_larger_than_others(tmp_path):
    make_shards(tmp_path, "doc", [8, 8, 9])
    with pytest.raises(ShardError, match="more than"):
        find_shards(tmp_path)


def test_empty_first_shard(tmp_path):
    make_shards(tmp_path, "doc", [0, 0, 0])
    with pytest.raises(ShardError, match="empty"):
        find_shards(tmp_path)


def test_folder_with_two_sets_or_none(tmp_path):
    make_shards(tmp_path, "a", [4, 1])
    make_shards(tmp_path, "b", [4, 1])
    with pytest.raises(ShardError, match="several"):
        find_shards(tmp_path)
    assert find_shards(tmp_path / "b").name == "b"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no shards"):
        find_shards(tmp_path / "empty")


def test_nonexistent_paths(tmp_path):
    with pytest.raises(ShardError):
        find_shards(tmp_path / "nope" / "doc")
    with pytest.raises(ShardError):
        find_shards(tmp_path / "doc-00000-of-00001.bin")
    assert not is_sharded_prefix(tmp_path / "doc")


def test_relative_prefix(tmp_path, monkeypatch):
    make_shards(tmp_path, "doc", [4, 1])
    monkeypatch.chdir(tmp_path)
    ss = find_shards("doc")
    assert ss.base == "doc"
    assert [p.name for p in ss.paths] == ["doc-00000-of-00001.bin", "doc-00001-of-00001.bin"]
    assert os.path.exists(ss.paths[0])
