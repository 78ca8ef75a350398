"""The compiled-tables cache (``pythia_data.tokenize.tables_cache``): a loaded entry gives
the model a fresh compile gives; a truncated, damaged, crafted, stale or unreadable file is
never trusted (the tokenizer is compiled again, silently); the command's output is the same
bytes with a good cache, a hostile one and none."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize import model as model_mod
from pythia_data.tokenize import tables_cache as tc
from pythia_data.tokenize.families import Family
from pythia_data.tokenize.model import compile_model
from pythia_data.tokenize.spec import bundled_path, open_config, read_config

from .conftest import subprocess_env

DATA = Path(__file__).resolve().parent / "data"
TEXTS = ["hello world", "e\u0301 caf\u00e9  x", "<|endoftext|>hi  <|padding|>", "日本語のテキスト",
         "don't I'LL we've", "1234567890 " * 5, "\t\n  \n\u3000x", "x" * 300]
ARRAYS = ("byte_id", "merge_keys", "merge_rank", "merge_new", "strie_next", "strie_tok",
          "ntrie_next", "ntrie_tok")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("PYTHIA_DATA_CACHE", str(folder))
    monkeypatch.delenv("PYTHIA_DATA_TOKENIZER_CACHE", raising=False)
    return folder / "tokenizers"


def _llama3_like(tmp_path) -> Path:
    """A cl100k-family file with ignore_merges and merges that leave some vocabulary
    entries unreached (whole words in the tables), a normalized added token that NFC
    changes."""
    raw = json.loads((DATA / "families" / "cl100k.json").read_text("utf-8"))
    vocab = raw["model"]["vocab"]
    merges = [(t[:i], t[i:]) for t in vocab for i in range(1, len(t))
              if t[:i] in vocab and t[i:] in vocab]
    merges.sort(key=lambda m: (len(m[0]) + len(m[1]), vocab[m[0]], vocab[m[1]]))
    raw["model"]["merges"] = [list(m) for m in merges]
    raw["model"]["ignore_merges"] = True
    path = tmp_path / "llama3-like.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), "utf-8")
    return path


def _fresh(path):
    return compile_model(read_config(path))


def _assert_same_model(got, want):
    assert got.stages == want.stages
    assert (got.vocab_size, got.eod_id, got.whole_words) == (want.vocab_size, want.eod_id,
                                                             want.whole_words)
    assert got.added == want.added and got.added_text == want.added_text
    for name in ARRAYS:
        a, b = getattr(got.tables, name), getattr(want.tables, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert a.flags.writeable and a.flags.c_contiguous and a.flags.aligned, name
    assert got.tables.whole_words == want.tables.whole_words


def _no_compile(monkeypatch):
    def refuse(config):
        raise AssertionError("compiled although the cache holds the tables")

    monkeypatch.setattr(model_mod, "compile_model", refuse)


@pytest.mark.parametrize("which", ["20b", "llama3"])
def test_second_load_comes_from_the_cache_and_is_the_same_model(which, cache, tmp_path,
                                                                monkeypatch):
    path = bundled_path() if which == "20b" else _llama3_like(tmp_path)
    first = load_tokenizer(path, workers=1)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".tables"
    want = _fresh(path)
    if which == "llama3":
        assert want.tables.whole_words  # the construction makes some
    restored = tc.load_model(open_config(path))
    assert restored is not None
    _assert_same_model(restored, want)
    with monkeypatch.context() as m:
        _no_compile(m)
        second = load_tokenizer(path, workers=2)
    assert second.model.__dict__.get("_from_file") is True
    a, b = first.encode_batch(TEXTS), second.encode_batch(TEXTS)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    ids = np.concatenate(a)
    assert second.decode(ids) == first.decode(ids)
    # the vocabulary and merges are compiled from the file when asked for
    assert restored.vocab == want.vocab and restored.merges == want.merges
    assert restored.token_text(5) == want.token_text(5)


def test_same_ids_as_hf_from_a_cached_model(cache, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    path = _llama3_like(tmp_path)
    load_tokenizer(path, workers=1)
    ours = load_tokenizer(path, workers=1)
    assert ours.model.__dict__.get("_from_file") is True
    words = [w.decode("utf-8", "replace") for w, _ in ours.tables.whole_words]
    docs = TEXTS + [" ".join(words), "".join(words)]
    hf = tokenizers.Tokenizer.from_file(str(path))
    assert [x.tolist() for x in ours.encode_batch(docs)] == [
        e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]


def _entry(cache) -> Path:
    load_tokenizer(None, workers=1)
    (path,) = cache.iterdir()
    return path


def _rebuilt(path: Path, before: bytes) -> None:
    """The bad file is ignored (a compile happens) and replaced by a good one."""
    assert tc.load_model(open_config(None)) is None or path.read_bytes() == before
    tok = load_tokenizer(None, workers=1)
    assert tok.model.__dict__.get("_from_file") is None  # compiled, not restored
    assert tok.encode("hello world").tolist() == [25521, 1533]
    assert tc.load_model(open_config(None)) is not None


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "garbage", "trailer"])
def test_damaged_file_is_compiled_again(damage, cache):
    path = _entry(cache)
    good = path.read_bytes()
    bad = {"truncated": good[: len(good) // 2], "empty": b"",
           "flipped": good[:5000] + bytes([good[5000] ^ 1]) + good[5001:],
           "garbage": os.urandom(len(good)), "trailer": good[:-1] + b"\0"}[damage]
    path.write_bytes(bad)
    assert tc.load_model(open_config(None)) is None
    _rebuilt(path, good)
    assert path.read_bytes() == good


def _craft(model, key: str, **changes) -> bytes:
    """A file with a valid digest whose tables were changed by ``changes``."""
    tables = copy.copy(model.tables)
    for name, value in changes.items():
        setattr(tables, name, value)
    fake = copy.copy(model)
    fake.__dict__["tables"] = tables
    return tc._encode(fake, key)


def _n(a, i, v):
    a = a.copy()
    a[i] = v
    return a


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    "trie_node_out_of_range", "trie_token_out_of_range", "trie_shape", "byte_id_out_of_range",
    "merge_table_full", "merge_table_not_pow2", "merge_new_out_of_range", "wrong_key",
    "other_format"])
def test_crafted_file_with_a_valid_digest_is_refused(change, cache):
    path = _entry(cache)
    good = path.read_bytes()
    model = _fresh(None)
    t = model.tables
    key = tc._key(open_config(None))
    nodes = t.strie_tok.size
    used = np.flatnonzero(t.merge_keys != -1)[0]
    crafted = {
        "trie_node_out_of_range": lambda: _craft(model, key, strie_next=_n(
            t.strie_next, 60, nodes + 7)),
        "trie_token_out_of_range": lambda: _craft(model, key, ntrie_tok=_n(
            t.ntrie_tok, 1, 10**6)),
        "trie_shape": lambda: _craft(model, key, strie_next=t.strie_next[:-256]),
        "byte_id_out_of_range": lambda: _craft(model, key, byte_id=_n(t.byte_id, 65, -5)),
        "merge_table_full": lambda: _craft(
            model, key, merge_keys=np.where(t.merge_keys == -1, 7, t.merge_keys)),
        "merge_table_not_pow2": lambda: _craft(
            model, key, merge_keys=t.merge_keys[:-1], merge_rank=t.merge_rank[:-1],
            merge_new=t.merge_new[:-1]),
        "merge_new_out_of_range": lambda: _craft(model, key, merge_new=_n(
            t.merge_new, used, 2**30)),
        "wrong_key": lambda: _craft(model, "0" * 64),
        "other_format": lambda: good[:32] + (tc.FORMAT + 1).to_bytes(4, "little") + good[36:-32]
        + hashlib.sha256(good[:32] + (tc.FORMAT + 1).to_bytes(4, "little")
                         + good[36:-32]).digest(),
    }[change]()
    path.write_bytes(crafted)
    assert tc.load_model(open_config(None)) is None
    _rebuilt(path, good)


def test_craft_helper_makes_files_that_load(cache):
    """The crafted files above fail for their change alone: unchanged, they load."""
    path = _entry(cache)
    model = _fresh(None)
    path.write_bytes(_craft(model, tc._key(open_config(None))))
    _assert_same_model(tc.load_model(open_config(None)), model)


@pytest.mark.slow
def test_a_changed_tokenizer_file_is_another_entry(cache, tmp_path):
    raw = json.loads(bundled_path().read_text("utf-8"))
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(raw), "utf-8")
    a = load_tokenizer(path, workers=1)
    assert [t["content"] for t in raw["added_tokens"][:2]] == ["<|endoftext|>", "<|padding|>"]
    del raw["added_tokens"][1]  # <|padding|> is no longer one token
    path.write_text(json.dumps(raw), "utf-8")
    b = load_tokenizer(path, workers=1)
    assert len(list(cache.iterdir())) == 2
    assert a.encode("<|padding|>").tolist() == [1]
    assert b.encode("<|padding|>").tolist() != [1]
    assert load_tokenizer(path, workers=1).model.__dict__.get("_from_file")


def test_code_change_is_another_key(cache, monkeypatch):
    config = open_config(None)
    before = tc.entry_path(config)
    monkeypatch.setattr(tc, "_code_stamp", lambda: "another compiler")
    assert tc.entry_path(open_config(None)) != before


def test_cache_off_and_unwritable(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHIA_DATA_TOKENIZER_CACHE", "0")
    load_tokenizer(None, workers=1)
    assert not cache.exists()
    monkeypatch.delenv("PYTHIA_DATA_TOKENIZER_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PYTHIA_DATA_CACHE", str(blocker))
    assert load_tokenizer(None, workers=1).encode("hello world").tolist() == [25521, 1533]


def test_refused_tokenizer_is_not_cached(cache, tmp_path):
    raw = json.loads((DATA / "families" / "cl100k.json").read_text("utf-8"))
    raw["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] += "|x"
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(raw), "utf-8")
    pytest.importorskip("tokenizers")
    with pytest.warns(UserWarning, match="hf backend"):
        assert load_tokenizer(path, workers=1).backend == "hf"
    assert not cache.exists() or not list(cache.iterdir())


@pytest.mark.slow
def test_at_most_keep_files(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(tc, "KEEP", 2)
    cache.mkdir(parents=True)
    stale, fresh = cache / ".x.tables.abc.tmp", cache / ".y.tables.def.tmp"
    stale.write_bytes(b"left by a killed writer")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1, 1))
    raw = json.loads(bundled_path().read_text("utf-8"))
    for i in range(4):
        raw["added_tokens"][-1]["content"] = f"<extra {i}>"
        path = tmp_path / f"t{i}.json"
        path.write_text(json.dumps(raw), "utf-8")
        load_tokenizer(path, workers=1)
    assert len(list(cache.glob("*.tables"))) == 2
    assert not stale.exists() and fresh.exists()


def test_family_survives_the_round_trip(cache):
    from pythia_data.tokenize.families import kernel_family

    path = DATA / "families" / "cl100k.json"
    load_tokenizer(path, workers=1)
    restored = tc.load_model(open_config(path))
    assert restored.pre_tokenizer.family == Family.CL100K
    assert isinstance(restored.pre_tokenizer.family, Family)
    assert kernel_family(restored.pre_tokenizer.family) == int(Family.CL100K)


def _tokenize_cmd(out, inp, env, backend="cpu"):
    return subprocess.run([sys.executable, "-m", "pythia_data", "tokenize", str(inp), "-o",
                           str(out), "--append-eod", "-q", "--force", "--backend", backend],
                          env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_command_output_is_the_same_with_a_good_a_hostile_and_no_cache(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS) + "\n", "utf-8")
    env = subprocess_env()
    env["PYTHIA_DATA_CACHE"] = str(tmp_path / "c")
    outs = []
    for run in ("empty", "cached", "hostile", "off"):
        run_env = dict(env)
        if run == "hostile":
            for f in (tmp_path / "c" / "tokenizers").iterdir():
                data = bytearray(f.read_bytes())
                data[len(data) // 3] ^= 0xFF
                f.write_bytes(bytes(data))
        if run == "off":
            run_env["PYTHIA_DATA_TOKENIZER_CACHE"] = "0"
        proc = _tokenize_cmd(tmp_path / run, inp, run_env)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        outs.append(b"".join((tmp_path / f"{run}_text_document{s}").read_bytes()
                             for s in (".bin", ".idx")))
    assert len(set(outs)) == 1
    pytest.importorskip("tokenizers")
    hf = _tokenize_cmd(tmp_path / "hf", inp, env, backend="hf")
    assert hf.returncode == 0, hf.stderr
    assert outs[0] == b"".join((tmp_path / f"hf_text_document{s}").read_bytes()
                               for s in (".bin", ".idx"))
