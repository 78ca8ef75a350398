"""The cuda backend on the Split-regex families (cl100k / Llama 3 / OLMo 2, o200k, Qwen 2,
DeepSeek V3), on a GPU or under Numba's CUDA simulator (see tests/test_cuda_sim.py): the
boundary kernel's pre-token starts equal the cpu scanner's, and ids equal HF's.

Inputs are tiny: the simulator runs every thread in Python."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.tokenize.cuda import cuda_status

USABLE, SIMULATOR, _REASON = cuda_status()
pytestmark = pytest.mark.skipif(
    not USABLE, reason="needs a CUDA device or NUMBA_ENABLE_CUDASIM=1 (see tests/test_cuda_sim.py)"
)
tokenizers = pytest.importorskip("tokenizers")

DATA = Path(__file__).resolve().parent.parent / "data"
NAMES = ["cl100k", "o200k", "qwen2", "deepseek_v3", "qwen3_5"]
ALPHABET = list(" \t\n\r'sStTlLdDmMreRExX0123.,!/()-") + [" "] * 6 + [
    "\u017f", "\u0301", "\u02b0", "\u01c5", "\u00e9", "\u00c9", "\u65e5", "\u3042", "\u30a0",
    "\u4e2d", "\uff21", "\u0663", "\u00a0", "\u3000", "\u2028", "\x00", "\U0001F600",
    "\U0001F3FD", "\u0915", "\u093f",
]
TEXT = st.text(alphabet=st.sampled_from(ALPHABET), max_size=30)
EDGE = [
    "", " ", "a", "x  ", "  x", "a  b", "don't DON'T I'm YOU'RE we'VE 'll 'ſ x'D", "'s 'S ''s",
    "1 12 123 1234 12345678", "a1b22c333", "٠١٢٣٤ ０１２", "a\r\nb", "a\n \n x", "!!\n\n",
    "a/\n/b//", "\t\tx\n\n  y", "HELLOworld helloWorld ǅa ʰʰA aʰ", "e\u0301 caf\u00e9",
    "日本語のテキスト123abc", "中文，标点。English", "カタカナ゠ひらがな", "😀😀 👍🏽",
    "\x00\x01abc\x02", ".Net ,hello (word) [x]", "\u00a0\u00a0x \u3000 y", "x" * 120,
    "word " * 30, "a<|endoftext|>b", "<|im_start|>hi<|im_end|>",
]


def multilingual() -> list[str]:
    out = []
    for line in (DATA / "multilingual.jsonl").read_text("utf-8").split("\n"):
        if line.strip():
            text = json.loads(line)["text"]
            out.append(text if isinstance(text, str) else "\n".join(text))
    return out


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    from pythia_data.tokenize import load_tokenizer

    path = DATA / "families" / f"{request.param}.json"
    tok = load_tokenizer(path, backend="cuda", batch_bytes=2048, batch_docs=48, workers=1)
    assert tok.backend == "cuda"
    return tok, tokenizers.Tokenizer.from_file(str(path))


def assert_same(tok, hf, texts):
    ids, offsets = tok.encode_flat(texts)
    want = [e.ids for e in hf.encode_batch(list(texts), add_special_tokens=False)]
    for i, text in enumerate(texts):
        assert ids[offsets[i]:offsets[i + 1]].tolist() == want[i], repr(text[:100])


def test_boundary_flags_equal_the_cpu_scanner(pair):
    """The device's pre-token starts of one batch are exactly the cpu scanner's."""
    from pythia_data.kernels.pretokenize_split import split_family_kernel
    from pythia_data.tokenize.base import encode_utf8

    tok, _hf = pair
    texts = [t for t in EDGE if "<|" not in t] + multilingual()[:6]
    data, offsets = encode_utf8(texts)
    ws = tok._workspaces()[0]
    n, nd = len(data), len(texts)
    assert n <= ws.cap
    ws.h_data[:n] = np.frombuffer(data, dtype=np.uint8)
    ws.h_offsets[:nd + 1] = offsets
    tok._submit(ws, n, nd)
    ws.pending = (0, nd, n, nd, [])
    tok._finish(ws)
    flag = ws.flag[:n].copy_to_host()
    arr = np.frombuffer(data, dtype=np.uint8)
    starts = np.empty(n + 1, np.int64)
    ends = np.empty(n + 1, np.int64)
    m = split_family_kernel(arr, offsets, tok.cpu.unicode.cls, int(tok.family), starts, ends)
    expect = np.zeros(n, dtype=np.uint8)
    expect[starts[:m]] = 1
    assert np.nonzero(flag)[0].tolist() == np.nonzero(expect)[0].tolist()


def test_ids_equal_hf_on_edges_and_corpus(pair):
    tok, hf = pair
    texts = EDGE + multilingual()
    assert_same(tok, hf, texts)
    assert tok.stats["routed"] < len(texts)  # most documents ran on the device


def test_special_tokens_route_to_the_cpu(pair):
    tok, hf = pair
    texts = ["plain text here", "a<|endoftext|>b", "more plain"]
    assert_same(tok, hf, texts)
    assert tok.stats["routed"] == 1


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_ids_equal_hf_hypothesis(pair, texts):
    tok, hf = pair
    assert_same(tok, hf, texts)
