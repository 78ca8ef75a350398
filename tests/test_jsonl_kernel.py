"""The long-JSON-line kernel (``pythia_data.kernels.jsonl``) against ``json.loads``, and the
reader path that uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.kernels.jsonl import json_text_utf8, utf8_valid


def fast(line: bytes, key: str = "text"):
    data = np.frombuffer(line, dtype=np.uint8)
    out = np.empty(data.size, dtype=np.uint8)
    n = json_text_utf8(data, np.frombuffer(key.encode(), dtype=np.uint8), out)
    return None if n < 0 else bytes(out[:n])


def oracle(line: bytes, key: str = "text"):
    """What the reader's json.loads path makes of the line: UTF-8 bytes or a reason."""
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "invalid"
    if isinstance(value, dict):
        if key not in value:
            return "no key"
        value = value[key]
    if not isinstance(value, str):
        return "not a string"
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate"


CASES = [
    b'{"text": "hi"}\n', b'"a string line"\r\n', b'{"a": [1, 2.5e3, {"b": null}], '
    b'"text": "x\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r"}',
    b'{"text": "a", "text": "b"}', b'{"text": 5}', b'{"te\\u0078t": "escaped key"}',
    b'{"text": "\\ud800"}', b'{"text": "\\udc00x"}', b'{"text": "a\x01"}', b'{"x": NaN, "text": "a"}',
    b'{"x": tru, "text": "a"}', b'{"text": "a"} x', b'{"text": "a",}', b'{"text":"a"',
    b'{"meta": {"k": [true, false, null, -0.5e-3, {}, []]}, "text": "\xe4\xb8\xad"}',
    b'{"text": "bad \xff utf8"}', b'{"text": "\xed\xa0\x80"}', b'{"text": "\xf4\x90\x80\x80"}',
    b'{"text": "\xc0\xaf"}', b'{"text": "\xe2\x82"}', b'[1, 2]', b'{}', b'{"a": 1}', b'{"a": "\\x"}',
    b'{"a": 01, "text": "x"}', b'{"a": 1., "text": "x"}', b'{"a": -, "text": "x"}',
    b'  {  "text"  :  "spaced"  }  ', b'{"text": ["a", "b"]}', b'',
]


@pytest.mark.parametrize("line", CASES)
def test_known_lines(line):
    got = fast(line)
    want = oracle(line)
    if got is None:  # refused: the reader falls back to json.loads
        assert not isinstance(want, bytes) or line in (
            b'{"text": "a", "text": "b"}', b'{"x": NaN, "text": "a"}')
    else:
        assert got == want


def test_the_common_line_shapes_are_taken():
    for line in (b'{"text": "hi"}\n', b'"a string line"\r\n', CASES[2], CASES[5], CASES[14]):
        assert fast(line) is not None


_TOKENS = ['{', '}', '[', ']', '"', '\\', 'u', '00e9', 'd83d', 'ude00', ',', ':', ' ', 'text',
           'a', '1', '-', '.', 'e', 'true', 'null', '\xe9', '\n', '\\n', '0', 'E+']


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=14), st.sampled_from(['}', '', ', "k": ']),
       st.lists(st.sampled_from(_TOKENS), max_size=8))
def test_hypothesis_agrees_with_json(body, tail, more):
    for line in (('{"text": "' + "".join(body) + '"' + tail + "".join(more)
                  + ("}" if tail.startswith(",") else "")).encode(), "".join(body).encode()):
        got = fast(line)
        if got is not None:
            assert got == oracle(line), line


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_utf8_validator_agrees_with_python(raw):
    try:
        raw.decode("utf-8")
        ok = True
    except UnicodeDecodeError:
        ok = False
    assert utf8_valid(np.frombuffer(raw, dtype=np.uint8), 0, len(raw)) == ok


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_round_trips(text):
    line = json.dumps({"id": 1, "text": text, "more": [text, None]}).encode()
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert fast(line) is None
    else:
        assert fast(line) == text.encode("utf-8")
    line = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    got = fast(line)
    if got is not None:
        assert got == text.encode("utf-8")


def test_reader_takes_long_lines_through_the_kernel(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    from pythia_data.tokenize import load_tokenizer, pipeline

    monkeypatch.setattr(pipeline, "BIG_LINE", 64)
    text = "caf\u00e9 \u4e2d\u6587 \U0001f600  x\n\ty" * 20
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": ["a", "b"]})
                    + "\n" + json.dumps({"text": "short"}) + "\n", encoding="utf-8")
    docs = list(pipeline.read_documents([path]))
    assert isinstance(docs[0].text, bytearray) and docs[0].text.decode() == text
    assert docs[1].text == "a\n\nb" and docs[2].text == "short"
    for backend in ("cpu", "hf"):
        tok = load_tokenizer(backend=backend)
        ids, off = tok.encode_flat([d.text for d in docs])
        want, want_off = tok.encode_flat([text, "a\n\nb", "short"])
        assert ids.tolist() == want.tolist() and off.tolist() == want_off.tolist()


@pytest.mark.slow  # ~3 s: it compiles uncached copies of the two entry points
def test_the_parser_is_compiled_once_for_bytes_and_writable_buffers():
    """Numba types read-only (``bytes``) and writable arrays apart: the block reader's
    parser (~9 s of a fresh compile) was compiled once for each. The entry points hand it a
    read-only view; uncached copies of them show which parser copies they ask for."""
    import types as pytypes

    from numba import njit

    from pythia_data.kernels import jsonl

    def uncached(fn):
        clone = pytypes.FunctionType(fn.py_func.__code__, fn.py_func.__globals__,
                                     fn.py_func.__name__)
        return njit(cache=False, nogil=True)(clone)

    block, line = uncached(jsonl.jsonl_block), uncached(jsonl.json_text_utf8)
    raw = b'{"text": "a\\u00e9b", "k": [1, 2.5e3, "q"]}\n{"text": "x"}\n'
    key = np.frombuffer(b"text", dtype=np.uint8)
    for data in (np.frombuffer(raw, dtype=np.uint8), np.frombuffer(bytearray(raw), np.uint8)):
        out = np.zeros(len(raw), np.uint8)
        doc_off, line_end = np.zeros(3, np.int64), np.zeros(2, np.int64)
        taken = np.zeros(2, np.uint8)
        assert block(data, 0, data.shape[0], key, out, 0, doc_off, line_end, taken) == (
            2, len(raw), 5)
        assert out[:5].tobytes() == "aéb".encode() + b"x"
        assert line(data[:raw.index(b"\n")], key, np.zeros(64, np.uint8)) == 4
    assert len(block.signatures) == len(line.signatures) == 2
    assert [sig[0].mutable for sig in jsonl._line_text.signatures] == [False]
