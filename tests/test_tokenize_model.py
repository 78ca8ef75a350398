"""The compiled tokenizer model (``pythia_data.tokenize.model``): every stage recognised
exactly or refused with a reason, and the odd ``tokenizer.json`` files that once gave silent
wrong ids, each against HF ``tokenizers``."""

from __future__ import annotations

import copy
import json
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="HF tokenizers is the reference")

from tokenizers import Tokenizer as HFTok  # noqa: E402

from pythia_data.errors import FormatError  # noqa: E402
from pythia_data.tokenize import load_tokenizer  # noqa: E402
from pythia_data.tokenize.model import compile_model  # noqa: E402
from pythia_data.tokenize.spec import bundled_path, read_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


@lru_cache(maxsize=1)
def _raw20b() -> dict:
    return json.loads(bundled_path().read_text(encoding="utf-8"))


def raw20b() -> dict:
    return copy.deepcopy(_raw20b())


@lru_cache(maxsize=1)
def texts() -> tuple[str, ...]:
    lines = [json.loads(x)["text"] for x in
             (DATA / "multilingual.jsonl").read_text(encoding="utf-8").split("\n") if x]
    lines = [t if isinstance(t, str) else "\n".join(t) for t in lines]
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from tokenize_corpus import corpus_documents

        corpus = [t[:3000] for _s, t in corpus_documents(80_000)]
    finally:
        sys.path.pop(0)
    edge = ["", " ", "a  b", "x" * 300, "e\u0301 caf\u00e9", "<|endoftext|>hi  <|padding|>",
            "don't I'LL we've", "1234567890 " * 20, "\t\n  \n\u3000x", "hello world"]
    return tuple(lines + corpus + edge)


def write(tmp_path, raw, name="tokenizer.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def hf_ref(path) -> HFTok:
    return HFTok.from_file(str(path))


def load_quiet(path, backend="cpu", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tokenizer(path, backend=backend, **kw)


def assert_encodes_like(tok, ref: HFTok, docs):
    ours = tok.encode_batch(list(docs))
    theirs = ref.encode_batch(list(docs), add_special_tokens=False)
    bad = [d[:80] for d, a, b in zip(docs, ours, theirs) if a.tolist() != b.ids]
    assert not bad, f"{len(bad)} documents differ, e.g. {bad[:3]!r}"


def added(content, tid, special=False, normalized=None):
    return {"id": tid, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": (not special) if normalized is None else normalized,
            "special": special}


# ------------------------------------------------------------------ stages


def test_bundled_20b_every_stage_exact():
    model = compile_model(read_config(None))
    kinds = [(s.kind, s.type, s.family, s.reason) for s in model.stages]
    assert kinds == [("normalizer", "NFC", "nfc", None), ("pre_tokenizer", "ByteLevel", "gpt2", None),
                     ("model", "BPE", "bpe", None), ("added_tokens", "25 tokens", "exact", None),
                     ("decoder", "ByteLevel", "byte_level", None)]
    assert model.refusal() is None
    assert model.vocab_size == 50277 and model.eod_id == 0
    assert "pre_tokenizer: ByteLevel (gpt2)" in repr(model)


@pytest.mark.slow
@pytest.mark.parametrize("edit, reason", [
    (lambda r: r.__setitem__("normalizer", {"type": "NFKC"}), "normalizer 'NFKC'"),
    (lambda r: r.__setitem__("normalizer", {"type": "Sequence", "normalizers": [
        {"type": "NFC"}, {"type": "Lowercase"}]}), "normalizer 'Lowercase'"),
    (lambda r: r.__setitem__("pre_tokenizer", {"type": "Whitespace"}), "Whitespace"),
    (lambda r: r["pre_tokenizer"].__setitem__("add_prefix_space", True), "ByteLevel"),
    (lambda r: r.__setitem__("decoder", {"type": "WordPiece", "prefix": "##",
                                         "cleanup": True}), "decoder 'WordPiece'"),
    (lambda r: r["model"].__setitem__("dropout", 0.1), "dropout"),
    (lambda r: r["model"].__setitem__("byte_fallback", True), "byte_fallback"),
    (lambda r: r["model"].__setitem__("continuing_subword_prefix", "##"), "continuing"),
    (lambda r: r["added_tokens"][0].__setitem__("lstrip", True), "lstrip"),
])
def test_each_stage_refused_with_its_reason(tmp_path, edit, reason):
    raw = raw20b()
    edit(raw)
    path = write(tmp_path, raw)
    model = compile_model(read_config(path))
    assert reason in (model.refusal() or "")
    with pytest.warns(UserWarning, match="using the hf backend"):
        try:
            tok = load_tokenizer(path, backend="cpu")
        except FormatError as exc:  # a file HF itself cannot load (it panics): one line
            assert "tokenizers cannot load" in str(exc) and "\n" not in str(exc)
            return
    assert tok.backend == "hf"


@pytest.mark.slow
def test_sequence_of_one_nfc_is_nfc(tmp_path):
    raw = raw20b()
    raw["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    path = write(tmp_path, raw)
    tok = load_tokenizer(path, backend="cpu")
    assert tok.backend == "cpu"
    assert_encodes_like(tok, hf_ref(path), texts()[:60])


def test_cli_backend_choices_are_the_registry():
    from click.testing import CliRunner

    from pythia_data.cli import cli
    from pythia_data.tokenize.registry import BACKENDS

    for cmd in (["tokenize", "--help"], ["batches", "--help"]):
        out = CliRunner().invoke(cli, cmd).output
        assert "[" + "|".join(BACKENDS) + "]" in out.replace("\n", "").replace(" ", ""), cmd


# ------------------------------------------------------------------ no silent wrong ids


def test_duplicate_merges_keep_the_last_rank(tmp_path):
    raw = raw20b()
    merges = raw["model"]["merges"]
    # re-list early, frequent merges at the end: HF's merge map keeps the later rank
    merges.extend(merges[i] for i in (0, 1, 2, 5, 10, 40, 100, 300, 1000))
    path = write(tmp_path, raw)
    tok = load_tokenizer(path, backend="cpu", workers=1)
    assert tok.backend == "cpu"
    ref = hf_ref(path)
    assert_encodes_like(tok, ref, texts())
    # the case that can fail: the result differs from the unedited tokenizer
    plain = load_tokenizer(backend="cpu", workers=1)
    probe = "the then there in and on at his Hello world, the theorem"
    assert tok.encode(probe).tolist() != plain.encode(probe).tolist()


def test_bad_merges_are_a_format_error(tmp_path):
    raw = raw20b()
    raw["model"]["merges"].append("a b c")
    with pytest.raises(FormatError, match="not a pair"):
        compile_model(read_config(write(tmp_path, raw)))
    raw = raw20b()
    raw["model"]["merges"].append("zzqq xxyy")
    with pytest.raises(FormatError, match="not in the vocabulary"):
        compile_model(read_config(write(tmp_path, raw)))


ADDED_CASES = {
    # stored ids ignored: HF gives the next free id in list order
    "shifted ids": lambda n: [added("<|endoftext|>", 7, True), added("ZZQQ", 3),
                              added("<|padding|>", 99, True), added("QQZZ", 5000)],
    # a content already in the vocabulary takes the vocabulary's id
    "content in vocab": lambda n: [added("hello", 1, True, False), added("world", 2),
                                   added("NEWTOK", 3, True)],
    # the same content twice: the first id, the last token decides how it decodes
    "duplicates": lambda n: [added("ZZQQ", n + 5, True, False), added("ZZQQ", n + 9),
                             added("QQZZ", n + 1), added("QQZZ", n + 1)],
    # non-special before a special of the same content: specials are registered first
    "special registered first": lambda n: [added("AAXX", n), added("AAXX", n + 1, True, False),
                                           added("BBYY", n + 2, True)],
    # normalized (NFC) contents: matched and decoded in NFC form
    "nfc contents": lambda n: [added("e\u0301x", n), added("a\u0301", n + 1),
                               added("\u00ff\u0100", n + 2), added("e\u0301", n + 3, True, False)],
    "empty and space runs": lambda n: [added("", n), added("   ", n + 1), added("  ", n + 2),
                                       added("\t\t", n + 3)],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ADDED_CASES))
def test_added_token_ids_are_hfs(tmp_path, case):
    raw = raw20b()
    n = len(raw["model"]["vocab"])
    raw["added_tokens"] = ADDED_CASES[case](n)
    path = write(tmp_path, raw)
    ref = hf_ref(path)
    tok = load_tokenizer(path, backend="cpu", workers=1)
    assert tok.backend == "cpu"
    hf_vocab = ref.get_vocab(with_added_tokens=True)
    assert tok.vocab_size == max(hf_vocab.values()) + 1
    contents = [t["content"] for t in raw["added_tokens"] if t["content"]]
    docs = [f"x{c}y {c} {c}{c}" for c in contents] + ["".join(contents), "e\u0301x a\u0301"]
    docs += list(texts()[:40])
    assert_encodes_like(tok, ref, docs)
    ids = sorted(set(hf_vocab.values()) - set(range(40, n - 40)))
    for i in ids:
        assert tok.decode([i]) == ref.decode([i], skip_special_tokens=False), i
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=False)
    hf = load_tokenizer(path, backend="hf")
    assert hf.vocab_size == tok.vocab_size and hf.eod_id == tok.eod_id


def test_truncation_and_padding_in_the_file_are_ignored(tmp_path):
    raw = raw20b()
    raw["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst",
                         "stride": 0}
    raw["padding"] = {"strategy": {"Fixed": 12}, "direction": "Right",
                      "pad_to_multiple_of": None, "pad_id": 1, "pad_type_id": 0,
                      "pad_token": "<|padding|>"}
    path = write(tmp_path, raw)
    plain = hf_ref(bundled_path())
    docs = ["word " * 40, "a", ""]
    want = [e.ids for e in plain.encode_batch(docs, add_special_tokens=False)]
    assert len(hf_ref(path).encode(docs[0], add_special_tokens=False).ids) == 12  # HF would
    for backend in ("cpu", "hf"):
        tok = load_tokenizer(path, backend=backend)
        assert [a.tolist() for a in tok.encode_batch(docs)] == want, backend
        ids, offsets = tok.encode_flat(docs)
        assert np.diff(offsets).tolist() == [len(w) for w in want]


def test_tokenize_command_never_truncates(tmp_path):
    from click.testing import CliRunner

    from pythia_data.cli import cli
    from pythia_data.dataset import IndexedDataset

    raw = raw20b()
    raw["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst",
                         "stride": 0}
    path = write(tmp_path, raw)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "word " * 50}) + "\n")
    for backend in ("cpu", "hf"):
        res = CliRunner().invoke(cli, ["tokenize", str(src), "-o", str(tmp_path / backend),
                                       "-t", str(path), "--backend", backend, "-q"])
        assert res.exit_code == 0, res.output
        with IndexedDataset(str(tmp_path / backend) + "_text_document") as ds:
            assert int(ds.sizes[0]) == 51  # 50 tokens + EOD


def test_decoder_null_joins_token_strings(tmp_path):
    raw = raw20b()
    raw["decoder"] = None
    path = write(tmp_path, raw)
    ref = hf_ref(path)
    tok = load_tokenizer(path, backend="cpu")
    assert tok.backend == "cpu" and tok.model.decoder.family == "join"
    rng = np.random.default_rng(5)
    for _ in range(20):
        ids = rng.integers(0, 50290, size=int(rng.integers(0, 12))).tolist()
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=False)
    ids = tok.encode("Hello world<|endoftext|>  e\u0301 ok").tolist()
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=False)
    assert_encodes_like(tok, ref, texts()[:30])


def _unigram_file(tmp_path, pre="Metaspace") -> Path:
    pieces = [["<unk>", 0.0], ["</s>", 0.0], ["\u2581", -2.0]]
    pieces += [[ch, -3.0] for ch in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [["\u2581the", -1.0], ["he", -1.5], ["\u2581a", -1.2]]
    raw = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added("<unk>", 0, True), added("</s>", 1, True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always", "split": True} if pre else None,
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": 0, "vocab": pieces, "byte_fallback": False},
    }
    return write(tmp_path, raw, "unigram.json")


def _wordpiece_file(tmp_path) -> Path:
    vocab = {"[UNK]": 0, "[SEP]": 1, "the": 2, "a": 3, "##s": 4, "cat": 5}
    raw = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added("[UNK]", 0, True), added("[SEP]", 1, True)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                  "vocab": vocab},
    }
    return write(tmp_path, raw, "wordpiece.json")


@pytest.mark.parametrize("maker", [_unigram_file, _wordpiece_file])
def test_unigram_wordpiece_metaspace_fall_back_to_hf_exactly(tmp_path, maker):
    path = maker(tmp_path)
    model = compile_model(read_config(path))
    assert model.refusal() is not None
    with pytest.warns(UserWarning, match="model type"):
        tok = load_tokenizer(path, backend="cpu")
    ref = hf_ref(path)
    assert tok.backend == "hf"
    assert tok.vocab_size == max(ref.get_vocab(with_added_tokens=True).values()) + 1
    assert tok.eod_id == 1 and tok.dtype == np.uint16
    docs = ["the cats a the", "Hello the World", "", "zzz"]
    assert_encodes_like(tok, ref, docs)
    ids = tok.encode(docs[0]).tolist()
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=False)


def test_unigram_through_the_command_is_clean(tmp_path):
    from click.testing import CliRunner

    from pythia_data.cli import cli

    path = _unigram_file(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("the cat a\n")
    res = CliRunner().invoke(cli, ["tokenize", str(src), "-o", str(tmp_path / "o"), "-t",
                                   str(path), "-q"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_added_token_fields_are_required_as_hf_requires_them(tmp_path):
    for field in ("id", "special", "normalized", "lstrip", "rstrip", "single_word", "content"):
        raw = raw20b()
        del raw["added_tokens"][1][field]
        path = write(tmp_path, raw)
        if field == "normalized":  # HF refuses such a file (checked once: it is slow)
            with pytest.raises(Exception):  # noqa: B017 - HF's own error type
                hf_ref(path)
        with pytest.raises(FormatError, match="added token 1"):
            compile_model(read_config(path))


def test_a_file_hf_cannot_load_is_a_one_line_error(tmp_path):
    raw = raw20b()
    raw["model"]["type"] = "NoSuchModel"
    path = write(tmp_path, raw)
    with pytest.raises(FormatError, match="tokenizers cannot load"):
        load_quiet(path, backend="cpu")


# ------------------------------------------------------------------ ignore_merges


UNREACHABLE = ["helloworld", "\u0120helloworld", "abcxyz", "\u0120the\u0120the", "1234567",
               "\u00c3\u00a9t\u00c3\u00a9s", "q" * 40]  # byte-level strings merges never build


def _ignore_merges_file(tmp_path) -> Path:
    raw = raw20b()
    raw["model"]["ignore_merges"] = True
    vocab = raw["model"]["vocab"]
    for k, word in enumerate(UNREACHABLE):
        vocab[word] = 60000 + k
    return write(tmp_path, raw)


@pytest.mark.slow
def test_ignore_merges_exact(tmp_path):
    path = _ignore_merges_file(tmp_path)
    tok = load_tokenizer(path, backend="cpu", workers=1)
    assert tok.backend == "cpu"
    words = dict(tok.tables.whole_words)
    assert len(words) == len(UNREACHABLE) + 2  # and the two special tokens
    ref = hf_ref(path)
    docs = ["helloworld", " helloworld", "abcxyz abcxyz", "1234567", "\u00e9t\u00e9s", "q" * 40,
            "x helloworld y", "helloworlds", " the the", "q" * 41]
    assert_encodes_like(tok, ref, docs)
    assert_encodes_like(tok, ref, texts())
    assert tok.encode("helloworld").tolist() == [60000]
    # and it can fail: the same vocabulary without ignore_merges differs
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["model"]["ignore_merges"] = False
    plain = load_tokenizer(write(tmp_path, raw, "plain.json"), backend="cpu", workers=1)
    assert plain.encode("helloworld").tolist() != [60000]


def test_ignore_merges_survives_cache_clears(tmp_path):
    path = _ignore_merges_file(tmp_path)
    tok = load_tokenizer(path, backend="cpu", workers=1, cache_slots=1 << 14)
    ref = hf_ref(path)
    docs = ["helloworld", " helloworld abcxyz", "1234567"]
    noise = [f"{i} q{i}z w{i * 7}" for i in range(3000)]  # misses: the cache fills, clears
    for _ in range(2):
        tok.encode_flat(noise)
        assert_encodes_like(tok, ref, docs)


@pytest.fixture(scope="module")
def added_pair(tmp_path_factory):
    raw = raw20b()
    n = len(raw["model"]["vocab"])
    raw["added_tokens"] = ADDED_CASES["duplicates"](n) + ADDED_CASES["nfc contents"](n + 20)
    path = write(tmp_path_factory.mktemp("added"), raw)
    return load_tokenizer(path, backend="cpu", workers=1), hf_ref(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab ZQzq\u0301e")), max_size=12),
                max_size=6))
def test_hypothesis_added_tokens_anywhere(added_pair, docs):
    tok, ref = added_pair
    assert_encodes_like(tok, ref, docs)


# ------------------------------------------------------------------ long documents in parts


def test_long_documents_are_cut_where_ids_cannot_change():
    """A document longer than the kernel's scratch (64 KiB) is encoded in parts cut before
    an ASCII whitespace that follows a non-space: same ids as HF, for text full of space
    runs (added tokens), NFC work, Unicode spaces and contractions near the cuts."""
    import random

    cpu = load_tokenizer(backend="cpu", workers=1)
    hf = load_tokenizer(backend="hf")
    rng = random.Random(7)
    alpha = list("ab  \n\t\u3000\u00a0e\u0301x'\u00e9s") + ["  ", "<|endoftext|>"]
    docs = ["".join(rng.choice(alpha) for _ in range(rng.randint(70_000, 110_000)))
            for _ in range(2)]
    docs.append("word " * 40_000)  # cuts everywhere
    docs.append("x" * 100_000 + " y" * 10)  # no cut in the first 64 KiB: one big part
    docs.append("\u4e2d\u6587" * 30_000 + "\n" + "\u4e2d" * 50_000)  # cuts only at newlines
    ours = cpu.encode_batch(docs)
    theirs = hf.encode_batch(docs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.tolist() == b.tolist(), i
