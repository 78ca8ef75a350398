"""The encoder is compiled once per pre-tokenizer family (``family_encoder``): each family's
copies of the chain call that family's matcher and each other, and have their own names (so
numba's disk cache keeps them apart). Ids per family are checked against HF in
test_tokenize_families.py and test_tokenize_exact.py; these tests compile nothing."""

from __future__ import annotations

import pytest

from pythia_data.kernels import bpe
from pythia_data.kernels.pretokenize import next_pretoken_fast
from pythia_data.kernels.pretokenize_split import (
    match_cl100k_family,
    match_none,
    match_o200k,
    match_qwen2,
    match_qwen3_5,
    presplit_deepseek,
    presplit_none,
)
from pythia_data.tokenize.families import Family

EXPECTED = {
    Family.GPT2: (next_pretoken_fast, presplit_none),
    Family.CL100K: (match_cl100k_family, presplit_none),
    Family.O200K: (match_o200k, presplit_none),
    Family.QWEN2: (match_qwen2, presplit_none),
    Family.DEEPSEEK_V3: (match_none, presplit_deepseek),
    Family.QWEN3_5: (match_qwen3_5, presplit_none),
}


def _chain(encode):
    """name -> the jitted copy the family's encoder calls, following its globals."""
    env = encode.py_func.__globals__
    return {name: env[name] for name in bpe._CHAIN}


@pytest.mark.parametrize("family", list(Family), ids=lambda f: f.name)
def test_each_family_has_its_own_chain(family):
    encode = bpe.family_encoder(family)
    assert bpe.family_encoder(int(family)) is encode  # one dispatcher per family
    env = encode.py_func.__globals__
    assert env["_FAMILY"] == int(family)
    assert (env["_next_pretoken"], env["_presplit"]) == EXPECTED[family]
    chain = _chain(encode)
    assert chain["_encode"] is encode
    for name, fn in chain.items():
        assert fn.py_func.__qualname__ == f"{name}_f{int(family)}"
        assert fn.py_func.__code__ is getattr(bpe, name).__code__  # one copy of the logic
        assert fn.py_func.__globals__ is env  # calls its own family's copies
        assert fn.py_func.__module__ == "pythia_data.kernels.bpe"


def test_families_do_not_share_kernels():
    chains = [_chain(bpe.family_encoder(f)) for f in Family]
    for name in bpe._CHAIN:
        assert len({id(c[name]) for c in chains}) == len(Family)
        assert len({c[name].py_func.__qualname__ for c in chains}) == len(Family)
    # the module's own chain functions stay plain Python (never jitted themselves)
    assert not hasattr(bpe._encode, "py_func")


@pytest.mark.parametrize("family", [-1, 6, 99])
def test_an_unknown_family_is_refused(family):
    with pytest.raises(ValueError, match="unknown pre-tokenizer family"):
        bpe.family_encoder(family)
