"""The tokenizer protocol, spec resolution and backend registry."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from pythia_data.errors import InputError, UsageError
from pythia_data.tokenize import BACKENDS, load_tokenizer
from pythia_data.tokenize.spec import bundled_path, read_config

pytest.importorskip("tokenizers", reason="the hf backend needs tokenizers")


def test_bundled_tokenizer_file_is_shipped():
    raw = json.loads(bundled_path().read_text(encoding="utf-8"))
    assert raw["model"]["type"] == "BPE"
    assert raw["added_tokens"][0]["content"] == "<|endoftext|>"


def test_hf_backend_basics():
    tok = load_tokenizer(backend="hf")
    assert tok.backend == "hf"
    assert tok.eod_id == 0
    assert tok.vocab_size == 50277
    assert tok.dtype == np.uint16
    ids, offsets = tok.encode_flat(["a  b", "", "hi<|endoftext|>  x"])
    assert offsets.dtype == np.int64
    assert offsets.tolist() == [0, 3, 3, 7]
    assert ids.tolist() == [66, 50276, 67, 5801, 0, 50276, 89]
    batch = tok.encode_batch(["a  b", ""])
    assert [b.tolist() for b in batch] == [[66, 50276, 67], []]
    assert tok.decode([5801, 0, 50276, 89]) == "hi<|endoftext|>  x"
    assert tok.decode_batch([[66], [67]]) == ["a", "b"]


@pytest.mark.parametrize("backend", ["hf", "cpu"])
def test_surrogate_policy(backend):
    tok = load_tokenizer(backend=backend)
    with pytest.raises(InputError, match=r"document 1: lone surrogate U\+D800 at character 2"):
        tok.encode_flat(["ok", "ab\ud800c"])
    rep = load_tokenizer(backend=backend, errors="replace")
    assert rep.encode_flat(["ab\ud800c"])[0].tolist() == tok.encode_flat(["ab\ufffdc"])[0].tolist()
    with pytest.raises(UsageError):
        load_tokenizer(backend=backend, errors="ignore")


def test_spec_folder_and_file(tmp_path):
    (tmp_path / "tokenizer.json").write_bytes(bundled_path().read_bytes())
    for spec in (tmp_path, tmp_path / "tokenizer.json", str(tmp_path)):
        tok = load_tokenizer(spec, backend="hf")
        assert tok.encode_flat(["hello"])[0].tolist() == [25521]


def test_spec_errors(tmp_path):
    with pytest.raises(InputError):
        read_config(tmp_path / "missing.json")
    with pytest.raises(InputError, match="no tokenizer.json"):
        read_config(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a valid"):
        read_config(bad)
    with pytest.raises(UsageError, match="unknown tokenizer backend"):
        load_tokenizer(backend="gpu9000")


def test_cuda_slot_is_registered_and_says_so():
    from pythia_data.tokenize.cuda import cuda_status

    assert "cuda" in BACKENDS
    if cuda_status()[0]:
        pytest.skip("a CUDA device (or the simulator) is available here")
    with pytest.raises(UsageError, match="cuda backend needs an NVIDIA GPU"):
        load_tokenizer(backend="cuda")


def test_unsupported_tokenizer_falls_back_to_hf_with_warning(tmp_path):
    raw = json.loads(bundled_path().read_text(encoding="utf-8"))
    raw["normalizer"] = {"type": "Lowercase"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok = load_tokenizer(path, backend="cpu")
    assert tok.backend == "hf"
    assert any("using the hf backend" in str(w.message) for w in caught)
    assert tok.encode_flat(["HELLO"])[0].tolist() == [25521]


def test_hub_model_id_uses_the_local_cache_first(monkeypatch, tmp_path):
    import huggingface_hub

    (tmp_path / "tokenizer.json").write_bytes(bundled_path().read_bytes())
    calls = []

    def fake_download(repo_id, filename, local_files_only=False, **kw):
        calls.append((repo_id, filename, local_files_only))
        if local_files_only:
            return str(tmp_path / "tokenizer.json")
        raise AssertionError("must not go online when the file is cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    tok = load_tokenizer("EleutherAI/pythia-70m", backend="hf")
    assert tok.name == "EleutherAI/pythia-70m"
    assert calls == [("EleutherAI/pythia-70m", "tokenizer.json", True)]


def test_hub_model_id_unreachable_is_an_input_error(monkeypatch):
    import huggingface_hub

    def fake_download(repo_id, filename, local_files_only=False, **kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(InputError, match="cannot get tokenizer.json"):
        read_config("nobody/nothing")


def test_parallel_chunks_name_the_batch_document_and_agree():
    """Over _PARALLEL_MIN_BYTES with 2 workers, documents go in chunks: an error names the
    document's place in the whole batch (the first bad one), and the ids equal one worker's."""
    docs = [f"doc {i} " + "word " * 400 for i in range(400)]  # ~0.8 MB: many chunks
    two = load_tokenizer(backend="cpu", workers=2)
    one = load_tokenizer(backend="cpu", workers=1)
    a_ids, a_off = two.encode_flat(docs)
    b_ids, b_off = one.encode_flat(docs)
    assert a_ids.tolist() == b_ids.tolist() and a_off.tolist() == b_off.tolist()
    bad = list(docs)
    bad[397] = "ab\ud800c" + bad[397]
    bad[398] = "\ud801" + bad[398]
    with pytest.raises(InputError, match=r"document 397: lone surrogate U\+D800 at character 2"):
        two.encode_flat(bad)
    rep = load_tokenizer(backend="cpu", workers=2, errors="replace")
    fixed = [t.replace("\ud800", "\ufffd").replace("\ud801", "\ufffd") for t in bad]
    assert rep.encode_flat(bad)[0].tolist() == one.encode_flat(fixed)[0].tolist()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("eod", [None, 0])
def test_encode_utf8_documents_is_the_stored_form_of_encode_utf8_flat(workers, eod):
    """The one-pass writer form (dataset dtype, EOD after each document, side by side
    copies) equals the flat ids cast and with EODs inserted, in one call and in chunks."""
    from pythia_data.tokenize.pipeline import _as_stored

    docs = [f"doc {i} " + "wörd ünd " * (i % 37) + "x" * (i % 5) for i in range(1500)]
    docs[5] = ""  # an empty document: no ids, only its EOD
    raw = [d.encode() for d in docs]
    data = np.frombuffer(b"".join(raw), dtype=np.uint8)
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in raw], out=offsets[1:])
    assert offsets[-1] > (1 << 18)  # over _PARALLEL_MIN_BYTES: chunks with 2 workers
    tok = load_tokenizer(backend="cpu", workers=workers)
    flat, offs = tok.encode_utf8_flat(data, offsets)
    want_ids, want_len = _as_stored(flat, offs, np.dtype(np.uint16), eod)
    ids, lengths = tok.encode_utf8_documents(data, offsets, dtype=np.uint16, eod=eod)
    assert ids.dtype == np.uint16 and lengths.dtype == np.int64
    assert ids.tolist() == want_ids.tolist() and lengths.tolist() == want_len.tolist()
    small = tok.encode_utf8_documents(data[:offsets[3]], offsets[:4], dtype=np.int32, eod=eod)
    want = _as_stored(*tok.encode_utf8_flat(data[:offsets[3]], offsets[:4]),
                      np.dtype(np.int32), eod)
    assert small[0].tolist() == want[0].tolist() and small[1].tolist() == want[1].tolist()
    with pytest.raises(InputError, match="document 1: invalid UTF-8"):
        tok.encode_utf8_documents(b"ok\xff", np.array([0, 1, 3]), dtype=np.uint16)
