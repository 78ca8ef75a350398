"""The cuda backend's kernels and end-to-end ids, on a GPU or under Numba's CUDA simulator.

These tests skip unless a CUDA device is usable or ``NUMBA_ENABLE_CUDASIM=1`` was set before
numba was imported; ``tests/test_cuda_sim.py`` runs this folder in a subprocess with the
simulator, so a plain ``pytest`` covers them on any machine. Inputs are tiny (the simulator
runs every thread in Python)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data.errors import InputError
from pythia_data.tokenize.cuda import cuda_status

USABLE, SIMULATOR, _REASON = cuda_status()
pytestmark = pytest.mark.skipif(
    not USABLE, reason="needs a CUDA device or NUMBA_ENABLE_CUDASIM=1 (see tests/test_cuda_sim.py)"
)
tokenizers = pytest.importorskip("tokenizers")

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALPHABET = list("abcdstmrevlXY'''01239.,!-_(<|>)\n\t\r") + [" "] * 8 + [
    "\u00e9", "\u00fc", "\u4e2d", "\u00a0", "\u3000", "\U0001F600", "\u2028", "\u0301",
    "\u212b", "\u1100", "\u1161", "\uac00", "\ufb01", "\u0663",
]
TEXT = st.text(alphabet=st.sampled_from(ALPHABET), max_size=40)
INERT = st.text(alphabet=st.sampled_from(
    [c for c in ALPHABET if c not in "\u0301\u212b\u1100\u1161<|>"]), max_size=40)

EDGE_CASES = [
    "", " ", "  ", "a", "hello world", "hello  world", "hello   world", " " * 24, " " * 25,
    " " * 49 + "x", "x" + " " * 30 + "y", "\n", "\n\n", " \n ", "a \n b", "a\n\n\nb",
    "\t\tx", "x\t \t y", "  \n  x", "x  ", "x \n", "it's", "It'S", "I'm", "we'll", "you've",
    "they're", "he'd", "don't", "'s", "''s", "x''s", " 's", "\n's", "1's", "!'s", "'",
    "'ll'", "a's's", "a'sa", "'re've'll", "123", "1234567", "3.14", "x1y2", "a1 2b",
    "hello, world!", "...", "??!!", "(a)", "a-b_c", "$$$100", "foo\r\nbar", "\u00a0x",
    "x\u00a0 y", "\u3000\u3000a", "caf\u00e9", "na\u00efve", "e\u0301", "\u4e2d\u6587",
    "\u65e5\u672c\u8a9e \u30c6\u30ad\u30b9\u30c8", "\U0001F600\U0001F600 ok", "\ufb01",
    "\u212b", "\ud55c\uad6d\uc5b4", "\u1100\u1161", "<|endoftext|>", "a<|endoftext|>b",
    "<|padding|>", "<|endoftext", "x" * 300, "ab" * 100,
    "def f(x):\n    return x  # hi\n\n\n        pass", "\u0663\u0664 \u00bd", " \u0301x",
]


@pytest.fixture(scope="module")
def hf():
    from pythia_data.tokenize.spec import bundled_path

    return tokenizers.Tokenizer.from_file(str(bundled_path()))


@pytest.fixture(scope="module")
def tok():
    from pythia_data.tokenize import load_tokenizer

    return load_tokenizer(backend="cuda", batch_bytes=4096, batch_docs=64, workers=1)


@pytest.fixture(scope="module")
def tiny():
    from pythia_data.tokenize import load_tokenizer

    return load_tokenizer(backend="cuda", batch_bytes=48, batch_docs=3, workers=1,
                          long_piece=24)


def hf_ids(hf, texts):
    return [e.ids for e in hf.encode_batch(list(texts), add_special_tokens=False)]


def split(ids, offsets):
    return [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def run_batch(tok, texts):
    """One batch through the device pipeline; the intermediate arrays on the host."""
    from pythia_data.tokenize.base import encode_utf8

    data, offsets = encode_utf8(texts)
    ws = tok._workspaces()[0]
    n, nd = len(data), len(texts)
    assert n <= ws.cap and nd <= ws.docs
    ws.h_data[:n] = np.frombuffer(data, dtype=np.uint8)
    ws.h_offsets[:nd + 1] = offsets
    tok._submit(ws, n, nd)
    ws.pending = (0, nd, n, nd, [])
    _, _, ids, doc_out, routed = tok._finish(ws)

    def host(arr, m):
        return arr[:m].copy_to_host() if m else np.zeros(0, dtype=arr.dtype)

    out = {name: host(getattr(ws, name), n) for name in
           ("flag", "kind", "tokid", "kb", "rep", "nsym", "ssym")}
    out["pidx"] = host(ws.pidx, n + 1)
    n_pieces = int(out["pidx"][n])
    out["pstart"] = host(ws.pstart, n_pieces + 1)
    out.update(ids=ids, doc_out=doc_out, routed=routed, data=data, offsets=offsets,
               n_pieces=n_pieces)
    return out


# ---------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("m", [0, 1, 3, 4, 5, 17, 64, 65, 300, 1000])
def test_scan_is_an_exclusive_cumsum(tok, m):
    from numba import cuda

    rng = np.random.default_rng(m)
    src = rng.integers(0, 5, size=max(m, 1)).astype(np.uint8)
    ws = tok._workspaces()[1]
    d_src = cuda.to_device(src)
    dst = cuda.device_array(m + 1, dtype=np.int64)
    tok._scan(ws, d_src, dst, m)
    got = dst.copy_to_host()
    expect = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(src[:m], out=expect[1:])
    assert got.tolist() == expect.tolist()


def test_pair_table_holds_exactly_the_cpu_merges(tok):
    from numba import cuda

    from pythia_data.kernels.bpe import NO_MERGE, merge_get, pack_merge_table
    from pythia_data.kernels.cuda_bpe import _pair_hash

    t = tok.cpu.tables
    used = t.merge_keys[t.merge_keys != -1]
    pk = tok._d["pkeys"].copy_to_host()
    pr = tok._d["pranks"].copy_to_host()
    pn = tok._d["pnews"].copy_to_host()
    assert sorted(pk[pk != -1].tolist()) == sorted(used.tolist())
    rng = np.random.default_rng(0)
    sample = rng.choice(used, size=300, replace=False).tolist()
    sample += [(5 << 32) | 7, (50000 << 32) | 50000]  # not merges (checked below)
    mask = pk.size - 1
    packed = pack_merge_table(t.merge_keys, t.merge_rank, t.merge_new)
    for key in sample:
        left, right = key >> 32, key & 0xFFFFFFFF
        v = merge_get(packed, left, right)
        s = _pair_hash(left, right) & mask
        while pk[s] != key and pk[s] != -1:
            s = (s + 1) & mask
        if v == NO_MERGE:
            assert pk[s] == -1
        else:
            assert pk[s] == key and pr[s] == v >> 32 and pn[s] == v & 0xFFFFFFFF
    assert isinstance(cuda.to_device, object)


def _next_pretoken(text, p, end, cls):
    """Plain-Python GPT-2 regex match end from p (Oniguruma's leftmost alternative)."""
    def k(i):
        return int(cls[ord(text[i])])

    c = text[p]
    if c == "'" and p + 1 < end:
        if text[p + 1] in "stmd":
            return p + 2
        if p + 2 < end and text[p + 1:p + 3] in ("re", "ve", "ll"):
            return p + 3
    kind, q = k(p), p
    if c == " " and p + 1 < end and not k(p + 1) & 4:
        q, kind = p + 1, k(p + 1)
    if kind & 4 == 0:
        q += 1
        while q < end and (k(q) == kind if kind else k(q) == 0):
            q += 1
        return q
    q = p + 1
    while q < end and k(q) & 4:
        q += 1
    return q if q == end or q - p == 1 else q - 1


def cpu_pieces(tok, texts):
    """(global start byte, kind, token id) of every pre-token: a plain-Python oracle (space-run
    added tokens leftmost-longest, then the GPT-2 regex on the pieces between them)."""
    cls = tok.cpu.unicode.cls & 7  # the GPT-2 regex reads only the L, N and whitespace bits
    space_tok = {len(t["content"]): t["id"] for t in tok.config.added_tokens
                 if set(t["content"]) == {" "}}
    out = []
    base = 0
    for text in texts:
        boff = [0]
        for ch in text:
            boff.append(boff[-1] + len(ch.encode("utf-8")))
        n, i, seg = len(text), 0, 0
        while True:
            ln = 0
            if i < n and text[i] == " ":
                run = len(text[i:]) - len(text[i:].lstrip(" "))
                ln = max([x for x in space_tok if x <= run], default=0)
            if i == n or ln:
                q = seg
                while q < i:
                    r = _next_pretoken(text, q, i, cls)
                    out.append((base + boff[q], 0, -1))
                    q = r
                if i == n:
                    break
                out.append((base + boff[i], 1, space_tok[ln]))
                i += ln
                seg = i
            else:
                i += 1
        base += boff[n]
    return out


def device_pieces(res):
    out = []
    for k in range(res["n_pieces"]):
        a = int(res["pstart"][k])
        tokd = res["kind"][a] == 1
        out.append((a, 1 if tokd else 0, int(res["tokid"][a]) if tokd else -1))
    return out


@SETTINGS
@given(st.lists(INERT, min_size=1, max_size=4))
def test_boundaries_match_the_cpu_pretokenizer(tok, texts):
    res = run_batch(tok, texts)
    assert not res["routed"].any()
    assert device_pieces(res) == cpu_pieces(tok, texts)
    assert res["flag"].sum() == res["n_pieces"]


def test_boundaries_on_edge_cases(tok):
    texts = [t for t in EDGE_CASES if not any(c in t for c in "\u0301\u212b\u1100<")]
    for i in range(0, len(texts), 16):
        part = texts[i:i + 16]
        res = run_batch(tok, part)
        assert device_pieces(res) == cpu_pieces(tok, part), part


def test_dedupe_and_bpe_match_the_cpu_bpe(tok):
    from pythia_data.kernels.bpe import bpe_word_packed, pack_merge_table

    texts = ["the cat and the hat and the cat", "  the the  cat's cat's hat 1234 1234",
             "abcabcabc abcabcabc\n\nabcabcabc"]
    res = run_batch(tok, texts)
    t = tok.cpu.tables
    packed = pack_merge_table(t.merge_keys, t.merge_rank, t.merge_new)
    data = np.frombuffer(res["data"], dtype=np.uint8)
    ps = res["pstart"]
    reps = set()
    for k in range(res["n_pieces"]):
        a, b = int(ps[k]), int(ps[k + 1])
        if res["kind"][a] == 1 or b - a == 1:
            continue
        r = int(res["rep"][k])
        ra, rb = int(ps[r]), int(ps[r + 1])
        assert res["rep"][r] == r
        assert bytes(data[ra:rb]) == bytes(data[a:b])
        reps.add(r)
        m = b - a
        syms, vals = np.empty(m, np.int32), np.empty(m, np.int64)
        nsym = bpe_word_packed(data, a, b, t.byte_id, packed, syms, vals)
        assert res["nsym"][r] == nsym
        assert res["ssym"][ra:ra + nsym].tolist() == syms[:nsym].tolist()
    distinct = {bytes(data[int(ps[k]):int(ps[k + 1])]) for k in reps}
    assert len(reps) == len(distinct)
    assert len(reps) < sum(1 for k in range(res["n_pieces"])
                           if int(ps[k + 1]) - int(ps[k]) > 1)  # some duplicates were merged


def test_routing_decisions(tok):
    texts = ["caf\u00e9 \ud55c\uad6d", "e\u0301", "x<|endoftext|>", "\u212b", "<|endoftext",
             "\u1100\u1161", "plain text", "\ufb01 \u00bd", "x" * 256, "y" * 257,
             "a\n" + "y" * 257]  # the same long pre-token twice: both documents are routed
    res = run_batch(tok, texts)
    assert res["routed"].tolist() == [False, True, True, True, False, True, False, False, False,
                                      True, True]


# ---------------------------------------------------------------------------- end to end


def test_edge_cases_match_hf_and_cpu(tok, tiny, hf):
    expect = hf_ids(hf, EDGE_CASES)
    cpu = split(*tok.cpu.encode_flat(EDGE_CASES))
    assert cpu == expect
    for t in (tok, tiny):
        ids, offsets = t.encode_flat(iter(EDGE_CASES) if t is tiny else EDGE_CASES)
        assert ids.dtype == np.int32 and offsets.dtype == np.int64
        assert split(ids, offsets) == expect


@SETTINGS
@given(st.lists(TEXT, max_size=6))
def test_random_texts_match_hf(tok, hf, texts):
    ids, offsets = tok.encode_flat(texts)
    assert split(ids, offsets) == hf_ids(hf, texts)


def test_batches_empty_docs_and_docs_bigger_than_a_batch(tiny, hf):
    texts = ["", "", "a" * 10, "", "b  " * 40, "c d", "", "x" * 47, "y" * 48, "z" * 49, ""]
    ids, offsets = tiny.encode_flat(texts)
    assert split(ids, offsets) == hf_ids(hf, texts)
    assert tiny.encode_flat([])[1].tolist() == [0]


def test_workspaces_are_reused_across_calls(tiny, hf):
    first = tiny._workspaces()
    tiny.encode_flat(["one two", "three"])
    tiny.encode_flat(["four"] * 9)
    assert tiny._workspaces() is first and all(a is b for a, b in zip(first, tiny._ws))
    assert tiny.encode_batch(["four five"])[0].tolist() == hf_ids(hf, ["four five"])[0]


def test_lone_surrogates_follow_the_errors_policy(hf):
    from pythia_data.tokenize import load_tokenizer

    strict = load_tokenizer(backend="cuda", batch_bytes=64, workers=1)
    with pytest.raises(InputError, match="document 5"):
        strict.encode_flat(["a"] * 5 + ["x\ud800y"])
    replace = load_tokenizer(backend="cuda", batch_bytes=64, workers=1, errors="replace")
    ids, offsets = replace.encode_flat(["ok", "x\ud800y"])
    assert split(ids, offsets) == hf_ids(hf, ["ok", "x\ufffdy"])


def test_decode_roundtrip(tok):
    text = "Hello  world\n\tcaf\u00e9 <|endoftext|>"
    assert tok.decode(tok.encode(text)) == text


def test_utf8_input_matches_str_input(tok, tiny, hf):
    from pythia_data.tokenize.base import encode_utf8

    texts = EDGE_CASES[:40] + ["", "z" * 60, "\u00e9t\u00e9 \u4e2d"]
    data, offsets = encode_utf8(texts)
    expect = hf_ids(hf, texts)
    for t in (tok, tiny):
        ids, offs = t.encode_utf8_flat(np.frombuffer(data, dtype=np.uint8), offsets)
        assert split(ids, offs) == expect
    assert split(*tok.encode_utf8_flat(data, offsets)) == expect


@pytest.mark.parametrize("data,offsets,doc", [
    (b"ok\xff", [0, 2, 3], 1),
    (b"\xc3\xa9\xc3", [0, 2, 3], 1),
    (b"a\xc3\xa9", [0, 2, 3], 1),
])
def test_invalid_utf8_is_an_input_error(tok, data, offsets, doc):
    with pytest.raises(InputError, match=f"document {doc}"):
        tok.encode_utf8_flat(data, np.array(offsets))


def test_options_are_checked():
    from pythia_data.errors import UsageError
    from pythia_data.tokenize import load_tokenizer

    with pytest.raises(UsageError, match="unknown option"):
        load_tokenizer(backend="cuda", bogus=1)
    for bad in ({"batch_bytes": 4}, {"long_piece": 1}, {"batch_docs": 0}):
        with pytest.raises(UsageError):
            load_tokenizer(backend="cuda", **bad)


def test_long_documents_copied_one_by_one(tok, hf):
    texts = ["the quick brown fox's 12 jumps\n" * 40, "caf\u00e9 " * 150 + "x", "short"]
    assert sum(len(t.encode("utf-8")) for t in texts) >= 512 * len(texts)
    ids, offsets = tok.encode_flat(texts)
    assert split(ids, offsets) == hf_ids(hf, texts)
    assert tok.stats == {"docs": 3, "routed": 0, "batches": 1}


def test_retokenize_with_the_cuda_backend_equals_hf(tmp_path, tok, hf):
    # retokenize's UTF-8 path: the cuda tokenizer decodes through its cpu half
    # (decode_utf8_flat) and encodes the bytes on the device; a document cut inside a
    # character (token 127: the byte 0xC3 alone) gets decode's U+FFFD
    from pythia_data.dataset import DatasetBuilder, IndexedDataset
    from pythia_data.tokenize.pipeline import retokenize

    texts = ["hello world", "caf\u00e9 \u4e2d\u6587", "", "it's  x\n"]
    docs = [hf.encode(t, add_special_tokens=False).ids + [0] for t in texts] + [[127, 0], [68, 127, 0]]
    with DatasetBuilder(tmp_path / "src", np.uint16) as b:
        for d in docs:
            b.add_document(np.array(d))
    flat = np.array([i for d in docs for i in d[:-1]], dtype=np.int64)
    offsets = np.cumsum([0] + [len(d) - 1 for d in docs])
    data, offs = tok.decode_utf8_flat(flat, offsets)
    assert [data[a:b].tobytes() for a, b in zip(offs[:-1], offs[1:])] == [
        hf.decode(d[:-1], skip_special_tokens=False).encode("utf-8") for d in docs]
    retokenize(tmp_path / "src", tok, tok, tmp_path / "out")
    with IndexedDataset(tmp_path / "out") as out:
        assert out.num_documents == len(docs)
        for i, d in enumerate(docs):
            text = hf.decode(d[:-1], skip_special_tokens=False)
            assert out[i].tolist() == hf.encode(text, add_special_tokens=False).ids + [0], i
