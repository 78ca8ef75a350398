"""Issue 18, tokenize input edges: a UTF-8 BOM, input whose every document is empty, a
``.jsonl.zst`` cut at a block boundary or corrupt, deeply nested JSON, Ctrl-C while the
outputs are opened. The oracle for exact output is GPT-NeoX's ``preprocess_data.py`` loop
(``tests/test_tokenize_pipeline.py:neox_preprocess``)."""

from __future__ import annotations

import os
import signal

import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import builder as builder_mod
from pythia_data.errors import InputError
from pythia_data.io import atomic
from pythia_data.io.atomic import AtomicOutput
from pythia_data.tokenize.pipeline import read_documents
from tests.test_tokenize_pipeline import neox_preprocess, same_dataset

zstandard = pytest.importorskip("zstandard")

DOCS = [f"document number {i} with some text" for i in range(40)]


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(x) for x in args], input=input)


def one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pythia-data: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def jsonl(texts) -> bytes:
    import json

    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


# --------------------------------------------------------------------------- BOM


def test_bom_at_file_start_is_read_as_gpt_neox_does(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(jsonl(DOCS))
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + jsonl(DOCS))
    # jsonlines (GPT-NeoX's reader) opens .jsonl as utf-8-sig: the same documents
    oracle = neox_preprocess([plain], tmp_path / "oracle")
    res = run("tokenize", bom, "-o", tmp_path / "mine", "--backend", "hf", "--append-eod")
    assert res.exit_code == 0, res.output
    assert same_dataset(tmp_path / "mine_text_document", oracle)
    # and a BOM (or RS) at the start of a later line is skipped once, as jsonlines does
    docs = [d.text for d in read_documents([bom])]
    assert docs == DOCS
    later = tmp_path / "later.jsonl"
    later.write_bytes(jsonl(DOCS[:2]) + b"\xef\xbb\xbf" + jsonl(DOCS[2:3]) + b"\x1e"
                      + jsonl(DOCS[3:4]))
    assert [d.text for d in read_documents([later])] == DOCS[:4]
    z = tmp_path / "bom.jsonl.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(b"\xef\xbb\xbf" + jsonl(DOCS)))
    assert [d.text for d in read_documents([z])] == DOCS
    # a BOM inside the JSON text is text, not skipped
    inner = tmp_path / "inner.jsonl"
    inner.write_bytes(jsonl(["\ufeffkept"]))
    assert [d.text for d in read_documents([inner])] == ["\ufeffkept"]


# --------------------------------------------------------------------------- empty input


@pytest.mark.parametrize("content", [b'{"text": ""}\n{"text": ""}\n',
                                     pytest.param(b"", marks=pytest.mark.slow),
                                     pytest.param(b"\n\n", marks=pytest.mark.slow)])
def test_all_empty_input_writes_an_empty_dataset_like_gpt_neox(tmp_path, content):
    src = tmp_path / "empty.jsonl"
    src.write_bytes(content)
    oracle = neox_preprocess([src], tmp_path / "oracle") if content.strip() else None
    res = run("tokenize", src, "-o", tmp_path / "mine", "--backend", "hf", "--append-eod")
    assert res.exit_code == 0, res.output
    assert "pythia-data: warning: no documents in the input" in res.output
    out = tmp_path / "mine_text_document"
    assert os.path.getsize(f"{out}.idx") == 42 and os.path.getsize(f"{out}.bin") == 0
    if oracle is not None:
        assert same_dataset(out, oracle)
    info = run("info", out)
    assert info.exit_code == 0, info.output


# --------------------------------------------------------------------------- .zst


def _zst_in_blocks(parts: list[bytes]) -> tuple[bytes, list[int]]:
    """One zstd frame holding ``parts`` in separate blocks, and the byte offsets where each
    block ends (a cut there leaves a file that decodes cleanly up to that point)."""
    cobj = zstandard.ZstdCompressor(write_checksum=False).compressobj()
    out, ends = b"", []
    for part in parts:
        out += cobj.compress(part) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        ends.append(len(out))
    out += cobj.flush()
    return out, ends


def test_zst_cut_at_a_block_boundary_is_an_error(tmp_path):
    texts = [f"doc {i} " + "x" * (i % 37) for i in range(2000)]
    data, ends = _zst_in_blocks([jsonl(texts[:900]), jsonl(texts[900:])])
    full = tmp_path / "full.jsonl.zst"
    full.write_bytes(data)
    assert [d.text for d in read_documents([full])] == texts
    cut = tmp_path / "cut.jsonl.zst"
    for at in (ends[0], ends[0] - 3, len(data) - 1, 7):
        cut.write_bytes(data[:at])
        with pytest.raises(InputError, match=r"cut\.jsonl\.zst: truncated \.zst file"):
            list(read_documents([cut]))
    cut.write_bytes(data[: ends[0]])
    line = one_line_error(run("tokenize", cut, "-o", tmp_path / "o", "--backend", "hf"), 2,
                          str(cut), "truncated .zst")
    assert "900" not in line
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("o_", ".o_"))]


def test_corrupt_zst_is_one_line(tmp_path):
    data = zstandard.ZstdCompressor().compress(jsonl(DOCS) * 20)
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:])
    one_line_error(run("tokenize", bad, "-o", tmp_path / "o", "--backend", "hf"), 2, str(bad))
    bad.write_bytes(b"not zstd at all\n")
    one_line_error(run("tokenize", bad, "-o", tmp_path / "o", "--backend", "hf"), 2, str(bad),
                   "not a valid .zst")


# --------------------------------------------------------------------------- nested JSON


def test_deeply_nested_json_line_is_one_line(tmp_path):
    src = tmp_path / "deep.jsonl"
    src.write_text('{"text": "ok"}\n{"text": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    one_line_error(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"), 2,
                   f"{src}:2:", "nested too deeply")


# --------------------------------------------------------------------------- Ctrl-C


def test_interrupt_while_opening_an_output_leaves_no_partial(tmp_path, monkeypatch):
    real_open = os.open

    def open_then_sigint(path, flags, *args):
        fd = real_open(path, flags, *args)
        if os.fspath(path).endswith(".partial"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the file exists
        return fd

    monkeypatch.setattr(os, "open", open_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        AtomicOutput(tmp_path / "x.idx")
    monkeypatch.setattr(os, "open", real_open)
    assert os.listdir(tmp_path) == []
    assert not atomic._LIVE


def test_interrupt_before_the_builder_block_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl(DOCS))

    def enter(self):  # Ctrl-C after DatasetBuilder() returned, before `with` entered
        raise KeyboardInterrupt

    monkeypatch.setattr(builder_mod.DatasetBuilder, "__enter__", enter)
    res = run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf")
    assert res.exit_code == 130, res.output
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl"]


# --------------------------------------------------------------------------- tokenizers


def _tokenizer_without_eod(path):
    import json

    from pythia_data.tokenize.spec import bundled_path

    raw = json.loads(bundled_path().read_text(encoding="utf-8"))
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] != "<|endoftext|>"]
    raw["model"]["vocab"].pop("<|endoftext|>")
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.slow
def test_retokenize_into_a_tokenizer_without_eod_needs_eod_id(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl(DOCS[:5]))
    assert run("tokenize", src, "-o", tmp_path / "a", "--append-eod", "--backend", "hf",
               "-q").exit_code == 0
    data = tmp_path / "a_text_document"
    noeod = _tokenizer_without_eod(tmp_path / "noeod.json")
    one_line_error(run("retokenize", data, "-t", noeod, "-o", tmp_path / "b", "--backend",
                       "hf"), 2, "no end-of-document token", "--eod-id")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("b_", ".b_"))]
    res = run("retokenize", data, "-t", noeod, "-o", tmp_path / "b", "--backend", "hf",
              "--eod-id", "7")
    assert res.exit_code == 0, res.output
    from pythia_data.dataset import IndexedDataset

    with IndexedDataset(data) as src_ds, IndexedDataset(tmp_path / "b_text_document") as ds:
        assert ds.num_documents == 5
        for k in range(5):
            assert int(src_ds[k][-1]) == 0 and int(ds[k][-1]) == 7
            assert (ds[k][:-1] == src_ds[k][:-1]).all()  # same vocabulary otherwise
    one_line_error(run("retokenize", data, "-t", noeod, "-o", tmp_path / "c", "--backend",
                       "hf", "--eod-id", "999999"), 2, "--eod-id 999999")


def test_unigram_tokenizer_json_is_read(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.Unigram(
        [("<unk>", 0.0), ("a", -1.0), ("b", -2.0), ("ab", -1.5), ("</s>", -3.0)], 0))
    path = tmp_path / "uni.json"
    tok.save(str(path))
    from pythia_data.tokenize.spec import read_config

    cfg = read_config(path)
    assert cfg.vocab_size == 5 and cfg.eod_id == 4
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl(["ab a", "b"]))
    res = run("tokenize", src, "-o", tmp_path / "u", "-t", path, "--backend", "hf",
              "--append-eod")
    assert res.exit_code == 0, res.output
    from pythia_data.dataset import IndexedDataset

    with IndexedDataset(tmp_path / "u_text_document") as ds:
        assert [list(map(int, ds[k])) for k in range(2)] == [
            tok.encode("ab a").ids + [4], tok.encode("b").ids + [4]]


def test_hub_model_id_offline(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy",
                "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl(DOCS[:3]))
    res = run("tokenize", src, "-o", tmp_path / "x", "-t", "EleutherAI/gpt-neox-20b",
              "--backend", "hf", "--append-eod")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "using the bundled copy" in warn[0], res.output
    oracle = neox_preprocess([src], tmp_path / "oracle")
    assert same_dataset(tmp_path / "x_text_document", oracle)
    # another id: one line, and never a network download attempt (no retries)
    res = run("tokenize", src, "-o", tmp_path / "y", "-t", "someone/some-model")
    one_line_error(res, 2, "someone/some-model", "cannot reach the hub")
    assert False not in calls  # only cache look-ups
