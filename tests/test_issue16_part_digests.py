"""Issue 16: a unit's part is hashed as it is written (not read back for its completion
record), and the merge hashes again only the parts it cannot vouch for (an earlier run's,
another process's)."""

from __future__ import annotations

import json
import os
from functools import partial

import numpy as np
import pytest

import pythia_data.jobs.store as jstore
from pythia_data.dataset import DatasetBuilder
from pythia_data.errors import InputError, UsageError
from pythia_data.integrity.hashing import hash_file, new_hasher
from pythia_data.jobs import LocalExecutor, record_unit
from pythia_data.jobs.plan import Unit
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import tokenize_files, write_part
from pythia_data.tokenize.units import tokenize_units


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None, workers=1)


def _corpus(path, n=300, seed=1):
    rng = np.random.default_rng(seed)
    words = ["hello", "été", "中文", "12", "\n", " ", "emoji😀", ""]
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            k = int(rng.integers(0, 30))
            fh.write(json.dumps({"text": " ".join(words[int(i)] for i in
                                                  rng.integers(0, len(words), k))}) + "\n")
    return str(path)


def _files(prefix):
    return open(prefix + ".bin", "rb").read(), open(prefix + ".idx", "rb").read()


@pytest.mark.parametrize("docs", [0, 1, 50])
def test_builder_digests_are_those_of_the_committed_files(tmp_path, docs):
    rng = np.random.default_rng(docs)
    prefix = str(tmp_path / "d")
    with DatasetBuilder(prefix, np.uint16, new_hasher=partial(new_hasher, "xxh3"), durable=False) as b:
        for _ in range(docs):
            b.add_document(rng.integers(0, 60000, int(rng.integers(0, 300))))
        b.add_documents(np.arange(10, dtype=np.uint16), [3, 0, 7])
        # a merged dataset is copied through write() (its bytes are hashed), not
        # copy_file_range
        other = str(tmp_path / "o")
        with DatasetBuilder(other, np.uint16) as ob:
            ob.add_document(np.arange(1000, dtype=np.uint16))
        from pythia_data.dataset import IndexedDataset

        with IndexedDataset(other) as ds:
            b.add_index(ds)
    got = b.digests()
    assert got == {prefix + s: (os.path.getsize(prefix + s), hash_file(prefix + s, "xxh3"))
                   for s in (".bin", ".idx")}


def test_builder_digests_need_a_hashing_committed_builder(tmp_path):
    b = DatasetBuilder(str(tmp_path / "a"), np.uint16)
    b.finalize()
    with pytest.raises(UsageError):
        b.digests()
    b = DatasetBuilder(str(tmp_path / "b"), np.uint16, new_hasher=partial(new_hasher, "xxh3"))
    with pytest.raises(UsageError):
        b.digests()  # not committed yet
    b.abort()
    with pytest.raises(UsageError):
        b.digests()


def test_write_part_digests_match_the_files(tmp_path, tok):
    digests: dict = {}
    prefix = str(tmp_path / "p")
    write_part(["hello world", "", "été 中文"] * 50, tok, prefix, append_eod=True,
               durable=False, digests=digests)
    assert digests == {prefix + s: (os.path.getsize(prefix + s), hash_file(prefix + s, "xxh3"))
                       for s in (".bin", ".idx")}


def test_record_uses_given_digests_unless_the_size_disagrees(tmp_path):
    folder = str(tmp_path / "job")
    os.makedirs(os.path.join(folder, "done"))
    path = str(tmp_path / "part.bin")
    with open(path, "wb") as fh:
        fh.write(b"x" * 100)
    unit = Unit(0, "lines", "in.jsonl", 0, 10, 10)
    rec = record_unit(folder, unit, [], [path], {}, {path: (100, "f" * 32)})
    assert rec["outputs"]["part.bin"] == {"size": 100, "xxh3": "f" * 32}  # not read back
    rec = record_unit(folder, unit, [], [path], {}, {path: (99, "f" * 32)})
    assert rec["outputs"]["part.bin"] == {"size": 100, "xxh3": hash_file(path, "xxh3")}
    rec = record_unit(folder, unit, [], [path], {})
    assert rec["outputs"]["part.bin"]["xxh3"] == hash_file(path, "xxh3")


def _count_hashes(monkeypatch):
    calls = []

    def counting(path, algorithm="sha256", **kw):
        calls.append(os.path.basename(os.fspath(path)))
        return hash_file(path, algorithm, **kw)

    monkeypatch.setattr(jstore, "hash_file", counting)
    return calls


@pytest.mark.parametrize("executor", [lambda: LocalExecutor(1),
                                      lambda: LocalExecutor(2, mode="thread")])
def test_parts_this_process_wrote_are_not_read_back(tmp_path, tok, monkeypatch, executor):
    """Units run in this process: no part is hashed by reading it (not for the record,
    not at the merge), and the output is one process's, byte for byte."""
    src = _corpus(tmp_path / "a.jsonl")
    one = tokenize_files([src], tmp_path / "one", tok, append_eod=True)["output"]
    calls = _count_hashes(monkeypatch)
    out = str(tmp_path / "o")
    s = tokenize_units([src], out, tok, executor(), unit_bytes=2000, append_eod=True)
    assert s["units"] > 3
    assert calls == []
    assert _files(out) == _files(one)


def test_parts_of_an_earlier_run_are_hashed_at_the_merge(tmp_path, tok, monkeypatch):
    """A resumed job's parts (written before this run: a crash may have torn them) are
    read back and checked; a damaged one is refused."""
    src = _corpus(tmp_path / "a.jsonl")
    one = tokenize_files([src], tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    s = tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=2000, keep_job=True)
    n = s["units"]
    os.unlink(out + ".bin")
    os.unlink(out + ".idx")
    calls = _count_hashes(monkeypatch)
    tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=2000, keep_job=True)
    assert len(calls) == 2 * n  # each part's .bin and .idx, read back once
    assert _files(out) == _files(one)
    part = tmp_path / "o.job" / "parts" / "u00002.bin"
    data = bytearray(part.read_bytes())
    data[-1] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(InputError, match="u00002.bin changed after unit 2 finished"):
        tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=2000)


def test_a_fresh_part_whose_size_changed_is_refused(tmp_path, tok, monkeypatch):
    """A part of this run that is not re-hashed still must have its recorded size."""
    import pythia_data.tokenize.units as tu

    real = tu.record_unit

    def then_truncate(folder, unit, inputs, outputs, result, digests=None):
        rec = real(folder, unit, inputs, outputs, result, digests)
        if unit.id == 1:
            with open(outputs[0], "r+b") as fh:
                fh.truncate(os.path.getsize(outputs[0]) - 2)
        return rec

    monkeypatch.setattr(tu, "record_unit", then_truncate)
    src = _corpus(tmp_path / "a.jsonl")
    with pytest.raises(Exception, match="unit 1"):
        tokenize_units([src], str(tmp_path / "o"), tok, LocalExecutor(1), unit_bytes=2000)
    assert not os.path.exists(str(tmp_path / "o.bin"))
