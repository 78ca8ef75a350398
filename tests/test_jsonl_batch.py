"""The block reader of JSON lines (``kernels.jsonl.jsonl_block`` and
``pipeline.read_batches``) against the per-line path (``json.loads``): the same documents,
byte for byte, the same errors, and the same tokenize output."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.errors import InputError
from pythia_data.kernels.jsonl import first_invalid_document, jsonl_block
from pythia_data.tokenize import pipeline as pl

KEY = np.frombuffer(b"text", dtype=np.uint8)


def block(data: bytes, cap: int = 1 << 16, key: bytes = b"text"):
    """The kernel over ``data``: [(line bytes, document bytes or None)] and the end."""
    arr = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(arr.size, dtype=np.uint8)
    doc_off = np.empty(cap + 1, dtype=np.int64)
    line_end = np.empty(cap, dtype=np.int64)
    taken = np.empty(cap, dtype=np.uint8)
    n, end, w = jsonl_block(arr, 0, arr.size, np.frombuffer(key, dtype=np.uint8), out, 0,
                            doc_off, line_end, taken)
    assert doc_off[0] == 0 and doc_off[n] == w
    lines, start = [], 0
    for i in range(n):
        line = data[start:int(line_end[i])]
        doc = bytes(out[doc_off[i]:doc_off[i + 1]]) if taken[i] else None
        if not taken[i]:
            assert doc_off[i + 1] == doc_off[i]
        lines.append((line, doc))
        start = int(line_end[i])
    return lines, int(end)


def oracle(line: bytes, key: str = "text"):
    """What the per-line path makes of the line: its document's UTF-8 (for a plain string
    value) or a reason the kernel must decline it."""
    if not line.strip():
        return "blank"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid utf-8"
    if text.startswith(("\ufeff", "\x1e")):
        return "skipped first char"
    try:
        value = json.loads(text, parse_constant=lambda c: 1 / 0)
    except ZeroDivisionError:
        return "NaN/Infinity"
    except (ValueError, RecursionError):
        return "invalid json"
    if isinstance(value, dict):
        if key not in value:
            return "no key"
        pairs = json.loads(text, object_pairs_hook=lambda p: p)
        if sum(k == key for k, _ in pairs) > 1:
            return "repeated key"
        value = value[key]
    if not isinstance(value, str):
        return "not a string"
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate"


def check(data: bytes):
    lines, end = block(data)
    assert end == len(data)
    assert b"".join(line for line, _ in lines) == data
    assert all(line.endswith(b"\n") for line, _ in lines[:-1])
    for line, doc in lines:
        want = oracle(line)
        if doc is not None:
            assert doc == want, line
        elif isinstance(want, bytes):
            # only nesting deeper than the kernel's stack is declined while valid
            assert line.count(b"[") + line.count(b"{") > 200, line
    return lines


# --------------------------------------------------------------------------- generated lines

_text = st.text(st.characters(codec="utf-8") | st.sampled_from(
    ['"', "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\ufeff", "\U0001f600",
     "\ud800", "\udfff"]), max_size=40)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=False, allow_infinity=False), _text)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=8)


@st.composite
def objects(draw):
    """A JSON object line as json.dumps writes it, in its variants."""
    members = draw(st.dictionaries(st.sampled_from(["id", "meta", "text", "tex", "texts",
                                                    "\u00e9"]), _json, max_size=4))
    if draw(st.booleans()):
        members["text"] = draw(_text | st.lists(_text, max_size=2))
    value = draw(st.sampled_from(["object", "string", "other"]))
    if value == "string":
        members = draw(_text)
    elif value == "other":
        members = draw(_json)
    sep = draw(st.sampled_from([(", ", ": "), (",", ":"), (" ,\t", " :  ")]))
    line = json.dumps(members, ensure_ascii=draw(st.booleans()), separators=sep)
    if draw(st.booleans()) and isinstance(members, dict) and "text" in members:
        line = line.replace('"text"', draw(st.sampled_from(
            ['"te\\u0078t"', '"\\u0074ext"', '"text" ', '"Text"'])), 1)
    pad = st.sampled_from(["", " ", "\t", "\r", "  "])
    return (draw(pad) + line + draw(pad)).encode("utf-8", "surrogatepass")


_SOUP = [b"{", b"}", b"[", b"]", b'"', b"\\", b"u", b"00e9", b"d83d", b"\\ude00", b",", b":",
         b" ", b'"text"', b"a", b"1", b"-", b".", b"e", b"true", b"nul", b"NaN", b"\xe9",
         b"\xc3\xa9", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x00", b"\r", b"\xef\xbb\xbf",
         b"\x1e", b"\x0b"]


@st.composite
def jsonl(draw):
    lines = draw(st.lists(st.one_of(
        objects(),
        st.lists(st.sampled_from(_SOUP), max_size=12).map(b"".join),
        st.sampled_from([b"", b" ", b"\r", b"\xef\xbb\xbf" + b'{"text": "bom"}',
                         b'\x1e{"text": "rs"}', b'{"text": "x"}{"text": "y"}',
                         b'{"text": "a", "text": "b"}', b'{"text": "\\ud800"}',
                         b'{"text": "\xed\xa0\x80"}', b'{"m": "\xed\xbf\xbf", "text": "s"}',
                         b'{"text": "\xf4\x90\x80\x80"}', b'{"text": "\xe0\x80\xaf"}',
                         b"[" * 300 + b"]" * 300, b'{"a": ' + b"[" * 300 + b"]" * 300
                         + b', "text": "deep"}'])), max_size=12))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(lines),
                         max_size=len(lines)))
    data = b"".join(line + end for line, end in zip(lines, ends))
    if draw(st.booleans()) and data:
        data = data[:-1]  # the last line without its newline
    return data


# 80 examples by default; the full 500 slow-marked (.ci/run runs both)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jsonl())
def test_block_kernel_agrees_with_json_loads(data):
    check(data)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jsonl())
def test_block_kernel_agrees_with_json_loads_full(data):
    check(data)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(objects())
def test_plain_object_lines_are_taken(line):
    """What json.dumps writes with one "text" string (no lone surrogate) is never left to
    the slow path."""
    (got, doc), = check(line + b"\n")
    if isinstance(oracle(line), bytes):
        assert doc is not None, line


def test_known_lines():
    lines = check(b'{"text": "a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 \xe4\xb8\xad"}\n'
                  b'  "just a string"  \r\n'
                  b'{"meta": {"a": [1, -2.5e+3, true, false, null, "x\\u0000"]}, '
                  b'"text": "after meta"}\n'
                  b"\n"
                  b'{"text": "a", "text": "b"}\n'
                  b'{"text": ["a", "b"]}\n'
                  b'{"text": "tab\tinside"}\n'
                  b'{"text": "bad \xff"}\n'
                  b'{"text": "surrogate \xed\xa0\x80 as UTF-8"}\n'
                  b'{"text": "eight by eight by eight by eight"}')
    docs = [doc for _, doc in lines]
    assert docs == ['a"b\\c/d\b\f\n\r\t\u00e9\U0001f600 \u4e2d'.encode(), b"just a string",
                    b"after meta", None, None, None, None, None, None,
                    b"eight by eight by eight by eight"]


def test_lines_are_capped_and_resumed():
    data = b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(10))
    arr = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(arr.size, dtype=np.uint8)
    doc_off, line_end, taken = (np.empty(4, dtype=np.int64), np.empty(3, dtype=np.int64),
                                np.empty(3, dtype=np.uint8))
    pos, w, docs = 0, 0, []
    while pos < arr.size:
        n, pos2, w2 = jsonl_block(arr, pos, arr.size, KEY, out, w, doc_off, line_end, taken)
        assert 1 <= n <= 3 and pos2 == line_end[n - 1] and doc_off[0] == w
        docs += [bytes(out[doc_off[i]:doc_off[i + 1]]) for i in range(n)]
        pos, w = pos2, w2
    assert docs == [f"doc {i}".encode() for i in range(10)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=6))
def test_first_invalid_document(docs):
    data = np.frombuffer(b"".join(docs), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)

    def valid(d):
        try:
            d.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    want = next((i for i, d in enumerate(docs) if not valid(d)), -1)
    assert first_invalid_document(data, offsets) == want


# --------------------------------------------------------------------------- the reader


def per_line(data: bytes, errors: str = "strict", file_start: bool = True):
    """The per-line path's documents as one TextBatch, or its error message."""
    try:
        docs = list(pl.jsonl_documents(io.BytesIO(data), "in.jsonl", "text", errors,
                                       file_start=file_start))
    except InputError as exc:
        return str(exc)
    return pl.TextBatch.of_texts([d.text for d in docs])


def batched(data: bytes, errors: str = "strict", file_start: bool = True,
            batch_documents: int = pl.BATCH_DOCUMENTS, batch_chars: int = pl.BATCH_CHARS):
    try:
        batches = list(pl.read_jsonl_batches(
            io.BufferedReader(io.BytesIO(data), 7), "in.jsonl", "text", errors,
            file_start=file_start, batch_documents=batch_documents, batch_chars=batch_chars))
    except InputError as exc:
        return str(exc)
    for b in batches:
        assert b.offsets[0] == 0 and b.offsets[-1] == b.data.size and b.documents > 0
    return pl.TextBatch.join(batches) if batches else pl.TextBatch.of_texts([])


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.data.tobytes() == b.data.tobytes() and a.offsets.tolist() == b.offsets.tolist()


_READER_CASES = (jsonl(), st.sampled_from(["strict", "replace"]), st.booleans(),
                 st.integers(1, 5), st.integers(1, 200), st.integers(1, 70))


# 50 examples by default; the full 300 slow-marked (.ci/run runs both)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_READER_CASES)
def test_reader_equals_the_per_line_path(data, errors, file_start, docs, chars, ramp):
    reader_equals_the_per_line_path(data, errors, file_start, docs, chars, ramp)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*_READER_CASES)
def test_reader_equals_the_per_line_path_full(data, errors, file_start, docs, chars, ramp):
    reader_equals_the_per_line_path(data, errors, file_start, docs, chars, ramp)


def reader_equals_the_per_line_path(data, errors, file_start, docs, chars, ramp):
    import unittest.mock

    with unittest.mock.patch.object(pl, "_MIN_BLOCK", 8), \
            unittest.mock.patch.object(pl, "RAMP", ramp):
        got = batched(data, errors, file_start, docs, chars)
    assert same(got, per_line(data, errors, file_start)), (got, data)


def test_reader_keeps_order_errors_and_line_numbers():
    good = b'{"text": "ok"}\n'
    cases = [good * 5 + b'{"text": [1]}\n' + good,
             good * 3 + b'{"text": "\\ud800"}\n',
             b'\xef\xbb\xbf{"text": "bom"}\n' + good,
             good + b'\xef\xbb\xbf{"text": "bom not first"}\n',
             good * 2 + b"\xff\n",
             good + b'{"text": ["a", "b"]}\n\n \n' + b'"str"' ]
    for data in cases:
        for errors in ("strict", "replace"):
            want = per_line(data, errors)
            assert same(batched(data, errors, batch_documents=2, batch_chars=16), want)
    assert per_line(cases[0]) == ("in.jsonl:6: 'text' is a list, not a string (or a list "
                                  "of strings)")


def test_a_read_error_comes_after_the_lines_before_it():
    class Failing(io.RawIOBase):
        def __init__(self, data):
            self.data, self.at = data, 0

        def readable(self):
            return True

        def readinto(self, buf):
            if self.at >= len(self.data):
                raise OSError("disk on fire")
            n = min(len(buf), len(self.data) - self.at, 5)
            buf[:n] = self.data[self.at:self.at + n]
            self.at += n
            return n

    data = b'{"text": "a"}\n' * 3 + b'{"text": "cut'
    with pytest.raises(InputError, match=r"^in.jsonl:4: cannot read \(disk on fire\)$"):
        list(pl.read_jsonl_batches(io.BufferedReader(Failing(data)), "in.jsonl"))
    with pytest.raises(InputError, match=r"^in.jsonl:4: cannot read \(disk on fire\)$"):
        list(pl.jsonl_documents(io.BufferedReader(Failing(data)), "in.jsonl"))
    bad = b'{"text": "a"}\n{oops\n' + b'{"text": "b"}\n'
    with pytest.raises(InputError, match=r"^in.jsonl:2: not valid JSON"):
        list(pl.read_jsonl_batches(io.BufferedReader(Failing(bad)), "in.jsonl"))


def test_a_line_longer_than_the_block(monkeypatch):
    monkeypatch.setattr(pl, "_MIN_BLOCK", 16)
    big = json.dumps({"text": "x\u00e9\n" * 5000}).encode()
    data = b'{"text": "a"}\n' + big + b"\n" + b'{"text": "b"}'
    assert same(batched(data, batch_chars=64 * 64), per_line(data))


def test_each_block_is_a_batch_of_its_own(monkeypatch):
    """A block is read at the batch limits in force when it is read (after the consumer
    stepped them for the batch before), so its documents are a batch on their own: no two
    blocks' batches are joined (a copy of all the text; read at the previous limits, every
    block's batch was under half the next one and was joined with the next block's)."""
    monkeypatch.setattr(pl, "_MIN_BLOCK", 8)
    joins = []
    join = pl.TextBatch.join.__func__

    def spy(cls, batches):
        joins.append(len(batches))
        return join(cls, batches)

    monkeypatch.setattr(pl.TextBatch, "join", classmethod(spy))
    data = b"".join(json.dumps({"text": f"{i} " + "word " * 60}).encode() + b"\n"
                    for i in range(3000))
    chars = 1 << 16
    batches = list(pl.read_jsonl_batches(io.BytesIO(data), "in.jsonl", batch_chars=chars))
    assert max(joins, default=1) == 1, joins
    sizes = [int(b.data.size) for b in batches]
    # the limits double from 1/64 of the full ones: each batch about twice the last
    assert len(batches) > 8 and max(sizes) <= chars + 1024, sizes
    assert all(b > a for a, b in zip(sizes[:6], sizes[1:7])), sizes
    assert same(pl.TextBatch.join(batches), per_line(data))


# --------------------------------------------------------------------------- tokenize, end to end


def test_tokenize_equals_the_per_line_path(tmp_path):
    from pythia_data.jobs import LocalExecutor
    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.units import tokenize_units

    rows = []
    for i in range(400):
        rows.append(json.dumps({"id": i, "text": f"doc {i} caf\u00e9 \u4e2d\u6587 \U0001f600\n"
                                * (i % 7), "meta": {"k": [i, None]}},
                               ensure_ascii=i % 2 == 0))
        if i % 50 == 3:
            rows += ['{"text": ["joined", "list"]}', "", '"a bare string"',
                     '{"text": "a", "text": "repeated"}', '{"x": NaN, "text": "nan"}']
    src = tmp_path / "in.jsonl"
    src.write_text("\ufeff" + "\n".join(rows), encoding="utf-8")
    for backend in ("cpu", "hf"):
        if backend == "hf":
            pytest.importorskip("tokenizers")
        tok = load_tokenizer(backend=backend, workers=2)
        want = tmp_path / f"want-{backend}"
        summary = pl.tokenize_documents(pl.read_documents([src]), tok, want, append_eod=True)
        got = pl.tokenize_files([src], tmp_path / f"got-{backend}", tok, append_eod=True,
                                batch_documents=64, batch_chars=4096)
        for suffix in (".bin", ".idx"):
            assert (tmp_path / f"got-{backend}_text_document{suffix}").read_bytes() == \
                want.with_suffix(suffix).read_bytes()
        assert (got["documents"], got["skipped_empty"]) == (summary["documents"],
                                                            summary["skipped_empty"]) == (374, 58)
        units = tmp_path / f"units-{backend}"
        tokenize_units([str(src)], str(units), tok, LocalExecutor(1), append_eod=True,
                       unit_bytes=3000)
        for suffix in (".bin", ".idx"):
            assert units.with_suffix(suffix).read_bytes() == \
                want.with_suffix(suffix).read_bytes()
