"""The cpu backend's UTF-8 of ``str`` documents (read in place, gathered without the GIL)
against the plain ``encode`` + ``join`` oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.errors import InputError, UsageError
from pythia_data.tokenize import base
from pythia_data.tokenize.base import _IN_PLACE_MIN, encode_utf8


def utf8_gathered(texts, *args, **kwargs):
    """The function with every batch taking the in-place path (the default keeps batches
    of short documents on encode + join), and with the default: both must be the oracle's."""
    saved = base._IN_PLACE_MEAN
    try:
        base._IN_PLACE_MEAN = 0
        got = base.utf8_gathered(texts, *args, **kwargs)
    finally:
        base._IN_PLACE_MEAN = saved
    again = base.utf8_gathered(texts, *args, **kwargs)
    assert again[0].tobytes() == got[0].tobytes() and again[1].tolist() == got[1].tolist()
    return got

_chars = st.characters(codec="utf-8")
_any = st.characters()  # lone surrogates too
_short = st.text(_chars, max_size=20)
_long = st.builds(lambda a, k: (a * (_IN_PLACE_MIN // max(1, len(a)) + 1))[:_IN_PLACE_MIN + k],
                  st.text(_chars, min_size=1, max_size=8), st.integers(0, 40))
_doc = st.one_of(_short, _long, st.builds(lambda t: bytearray(t.encode("utf-8")), _short))


@settings(max_examples=200, deadline=None)
@given(st.lists(_doc, max_size=12), st.integers(0, 5))
def test_gathered_utf8_is_encode_and_join(texts, first):
    got, offs = utf8_gathered(texts, first=first)
    want, want_offs = encode_utf8(texts, first=first)
    assert got.dtype == np.uint8 and got.tobytes() == bytes(want)
    assert offs.tolist() == want_offs.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(_any, max_size=20),
                          st.builds(lambda t, k: t * (_IN_PLACE_MIN // max(1, len(t)) + k),
                                    st.text(_any, min_size=1, max_size=6),
                                    st.integers(1, 3))), max_size=8))
def test_gathered_utf8_surrogates_as_encode_utf8(texts):
    """Lone surrogates: "replace" gives encode_utf8's bytes; "strict" the same error."""
    got, offs = utf8_gathered(texts, "replace")
    want, want_offs = encode_utf8(texts, "replace")
    assert got.tobytes() == bytes(want) and offs.tolist() == want_offs.tolist()
    try:
        encode_utf8(texts)
    except InputError as exc:
        with pytest.raises(InputError) as err:
            utf8_gathered(texts)
        assert str(err.value) == str(exc)
    else:
        assert utf8_gathered(texts)[0].tobytes() == bytes(encode_utf8(texts)[0])


def test_gathered_utf8_refuses_non_text_and_leaves_the_strings_alone():
    with pytest.raises(UsageError, match="document 3 is a int"):
        utf8_gathered(["a", "b" * 300, "c", 7])
    long = "é" * 1000 + "x"
    before = long.encode("utf-8")
    data, offs = utf8_gathered([long, long])
    data[:] = 0  # the result is a copy: writing it never reaches the strings
    assert long.encode("utf-8") == before and offs.tolist() == [0, 2001, 4002]


def test_cpu_encode_of_long_documents_matches_hf():
    tokenizers = pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.spec import bundled_path

    hf = tokenizers.Tokenizer.from_file(str(bundled_path()))
    texts = ["héllo wörld " * 60, "plain ascii text, " * 40, "x", "日本語のテキスト" * 50]
    tok = load_tokenizer(backend="cpu", workers=2)
    ids, offs = tok.encode_flat(texts * 150)
    want = [e.ids for e in hf.encode_batch(texts * 150, add_special_tokens=False)]
    assert [ids[offs[i]:offs[i + 1]].tolist() for i in range(len(want))] == want
