"""`pythia-data tokenize / detokenize / retokenize` and the pipeline behind them.

The oracle is a plain reimplementation of GPT-NeoX's ``tools/preprocess_data.py`` loop
(lm_dataformat's reading, HF ``tokenizers`` ``encode(text).ids``, ``add_item`` +
``end_document``); outputs are compared byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import DatasetBuilder, IndexedDataset
from pythia_data.errors import InputError, UsageError
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import (
    dataset_documents,
    read_documents,
    retokenize,
    tokenize_documents,
    tokenize_files,
)
from pythia_data.tokenize.spec import bundled_path

tokenizers = pytest.importorskip("tokenizers", reason="the oracle is HF tokenizers")

DATA = Path(__file__).resolve().parent / "data"
MULTI = DATA / "multilingual.jsonl"


# --------------------------------------------------------------------------- helpers


def neox_preprocess(paths, prefix, *, append_eod=True, key="text", tokenizer_file=None):
    """preprocess_data.py, straightforwardly: lm_dataformat reading + HF encode + builder."""
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_file or bundled_path()))
    eod = tok.token_to_id("<|endoftext|>")
    dtype = np.uint16 if tok.get_vocab_size() < 65500 else np.int32
    builder = DatasetBuilder(prefix, dtype)
    for path in paths:
        path = str(path)
        if path.endswith(".txt"):
            with open(path, encoding="utf-8") as f:  # text mode: universal newlines
                texts = [f.read()]
        else:
            with open(path, encoding="utf-8", newline="\n") as f:
                texts = []
                for line in f:
                    ob = json.loads(line)
                    text = ob if isinstance(ob, str) else ob[key]
                    if isinstance(text, list):
                        text = "\n\n".join(text)
                    texts.append(text)
        for text in filter(lambda x: x, texts):
            doc_ids = []
            ids = tok.encode(text).ids
            if len(ids) > 0:
                doc_ids.append(ids)
            if append_eod:
                doc_ids[-1].append(eod)
            for sentence in doc_ids:
                builder.add_item(np.array(sentence, dtype=dtype))
            builder.end_document()
    builder.finalize()
    return prefix


def same_dataset(a, b) -> bool:
    a, b = str(a), str(b)
    return all(Path(a + s).read_bytes() == Path(b + s).read_bytes() for s in (".bin", ".idx"))


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(x) for x in args], input=input)


@pytest.fixture(scope="module")
def hf():
    return load_tokenizer(backend="hf")


@pytest.fixture(scope="module")
def multi_ds(tmp_path_factory):
    """The multilingual sample tokenized by the oracle (EOD appended)."""
    prefix = tmp_path_factory.mktemp("multi") / "oracle"
    return neox_preprocess([MULTI], prefix)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("append_eod", [True, False])
def test_hf_backend_matches_preprocess_data(tmp_path, multi_ds, append_eod):
    oracle = neox_preprocess([MULTI], tmp_path / "oracle", append_eod=append_eod)
    args = ["--append-eod"] if append_eod else []
    result = run("tokenize", MULTI, "-o", tmp_path / "out", "--backend", "hf", *args)
    assert result.exit_code == 0, result.output
    assert same_dataset(tmp_path / "out_text_document", oracle)
    with IndexedDataset(tmp_path / "out_text_document") as ds:
        assert ds.dtype == np.uint16
        assert ds.doc_idx.tolist() == list(range(ds.num_documents + 1))
        assert ds.num_documents == 40  # none of the sample's documents is empty
        if append_eod:
            assert all(int(ds[i][-1]) == 0 for i in range(len(ds)))


def test_cpu_backend_matches_hf(tmp_path, multi_ds):
    result = run("tokenize", MULTI, "-o", tmp_path / "cpu", "--backend", "cpu",
                 "--append-eod", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert same_dataset(tmp_path / "cpu_text_document", multi_ds)


def test_batching_does_not_change_the_output(tmp_path, hf, multi_ds):
    docs = read_documents([MULTI])
    tokenize_documents(docs, hf, tmp_path / "small", append_eod=True, batch_documents=3,
                       batch_chars=50)
    assert same_dataset(tmp_path / "small", multi_ds)


def test_empty_documents_skipped_whitespace_kept(tmp_path, hf):
    src = tmp_path / "in.jsonl"
    lines = [{"text": "a"}, {"text": ""}, {"text": " "}, {"text": []}, "", {"text": "\n"},
             {"text": ["x", "y"]}, "plain string"]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines) + "\n", encoding="utf-8")
    summary = tokenize_files([src], tmp_path / "o", hf, append_eod=True)
    assert summary["documents"] == 5 and summary["skipped_empty"] == 3
    src2 = tmp_path / "oracle.jsonl"  # the oracle cannot read blank lines: same data without
    src2.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    oracle = neox_preprocess([src2], tmp_path / "oracle")
    assert same_dataset(tmp_path / "o_text_document", oracle)
    with IndexedDataset(tmp_path / "o_text_document") as ds:
        assert hf.decode(ds[3][:-1]) == "x\n\ny"


# --------------------------------------------------------------------------- inputs


def test_inputs_txt_zst_folder_stdin(tmp_path, hf):
    zstandard = pytest.importorskip("zstandard")
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(MULTI.read_bytes()[:1500].rsplit(b"\n", 1)[0] + b"\n")
    (folder / "b" / "c.txt").write_bytes(b"line one\r\nline two\rthree\n")
    (folder / "b" / "a.txt").write_bytes("only document\n\u00e9".encode())
    (folder / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        b'{"text": "compressed one"}\n') + zstandard.ZstdCompressor().compress(
        b'{"text": "second frame"}\n'))
    (folder / "notes.md").write_text("ignored")
    (folder / ".hidden.jsonl").write_text('{"text": "ignored"}\n')
    docs = list(read_documents([folder]))
    sources = [os.path.relpath(d.source, folder) for d in docs]
    assert sources[-4:] == ["b/a.txt", "b/c.txt", "z.jsonl.zst", "z.jsonl.zst"]
    assert all(s == "a.jsonl" for s in sources[:-4])
    assert docs[-3].text == "line one\nline two\nthree\n"
    assert [d.text for d in docs[-2:]] == ["compressed one", "second frame"]
    assert docs[-2].line == 1 and docs[-1].line == 2
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    (plain / "z.jsonl.zst").unlink()
    (plain / "z.jsonl").write_text('{"text": "compressed one"}\n{"text": "second frame"}\n')
    files = [plain / "a.jsonl", plain / "b" / "a.txt", plain / "b" / "c.txt", plain / "z.jsonl"]
    oracle = neox_preprocess(files, tmp_path / "oracle")
    result = run("tokenize", folder, "-o", tmp_path / "f", "--backend", "hf", "--append-eod")
    assert result.exit_code == 0, result.output
    assert same_dataset(tmp_path / "f_text_document", oracle)
    # stdin: JSON lines
    result = run("tokenize", "-", "-o", tmp_path / "s", "--backend", "hf", "--append-eod",
                 input=MULTI.read_bytes())
    assert result.exit_code == 0, result.output
    oracle = neox_preprocess([MULTI], tmp_path / "o2")
    assert same_dataset(tmp_path / "s_text_document", oracle)


def test_jsonl_key_names_the_output(tmp_path, hf):
    src = tmp_path / "k.jsonl"
    src.write_text('{"content": "abc", "text": "no"}\n')
    result = run("tokenize", src, "-o", tmp_path / "p", "--jsonl-key", "content",
                 "--backend", "hf")
    assert result.exit_code == 0, result.output
    with IndexedDataset(tmp_path / "p_content_document") as ds:
        assert hf.decode(ds[0]) == "abc"


# --------------------------------------------------------------------------- errors


def _fail(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    msg = result.output.strip()
    assert len(msg.splitlines()) == 1, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_bad_utf8_names_file_and_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"text": "ok"}\n{"text": "fine"}\n{"text": "bad \xff\xfe here"}\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"),
          f"{src}:3: invalid UTF-8", "--errors replace")
    assert not list(tmp_path.glob("o_*"))
    result = run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf", "--errors",
                 "replace")
    assert result.exit_code == 0, result.output
    docs = list(read_documents([src], errors="replace"))
    assert docs[2].text == "bad \ufffd\ufffd here"
    txt = tmp_path / "bad.txt"
    txt.write_bytes(b"one\ntwo\nthr\xc3ee\n")
    _fail(run("tokenize", txt, "-o", tmp_path / "t", "--backend", "hf"), f"{txt}:3: invalid")


def test_lone_surrogate_names_file_and_line(tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"text": "ok"}\n{"text": "a\\ud800b"}\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"),
          f"{src}:2: lone surrogate U+D800")
    docs = list(read_documents([src], errors="replace"))
    assert docs[1].text == "a\ufffdb"
    src.write_text('{"text": "pair \\ud83d\\ude00 ok"}\n')
    assert next(read_documents([src])).text == "pair \U0001f600 ok"


def test_bad_json_missing_key_and_types(tmp_path):
    src = tmp_path / "j.jsonl"
    src.write_text('{"text": "ok"}\n{"text": "unterminated\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"), f"{src}:2: not valid JSON")
    src.write_text('{"text": "ok"}\n\n{"body": "x"}\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"),
          f"{src}:3: no key 'text'")
    src.write_text('{"text": 5}\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"), f"{src}:1:", "not a string")
    src.write_text("[1, 2]\n")
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"), f"{src}:1:")
    assert not list(tmp_path.glob("o_*"))


def test_empty_input_missing_input_and_existing_output(tmp_path):
    src = tmp_path / "e.jsonl"
    src.write_text('{"text": ""}\n')
    # every document empty: an empty dataset, as preprocess_data.py writes (see
    # test_issue18_tokenize.py), and a warning
    res = run("tokenize", src, "-o", tmp_path / "e", "--backend", "hf")
    assert res.exit_code == 0 and "warning: no documents" in res.output
    assert (tmp_path / "e_text_document.bin").read_bytes() == b""
    _fail(run("tokenize", tmp_path / "nope.jsonl", "-o", tmp_path / "o", "--backend", "hf"),
          "no such file")
    (tmp_path / "x.csv").write_text("a")
    _fail(run("tokenize", tmp_path / "x.csv", "-o", tmp_path / "o", "--backend", "hf"),
          "unknown input type")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    _fail(run("tokenize", empty, "-o", tmp_path / "o", "--backend", "hf"), "holds no")
    src.write_text('{"text": "x"}\n')
    assert run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf").exit_code == 0
    before = (tmp_path / "o_text_document.bin").read_bytes()
    src.write_text('{"text": "y y y"}\n')
    _fail(run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf"), "already exists",
          "--force")
    assert (tmp_path / "o_text_document.bin").read_bytes() == before
    assert run("tokenize", src, "-o", tmp_path / "o", "--backend", "hf", "--force").exit_code == 0
    assert (tmp_path / "o_text_document.bin").read_bytes() != before


def test_interrupted_run_leaves_nothing_and_reruns_cleanly(tmp_path, hf, multi_ds):
    calls = []

    def boom(nbytes):
        calls.append(nbytes)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_files([MULTI], tmp_path / "o", hf, append_eod=True, progress=boom,
                       batch_documents=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a killed run's stale .partial files do not block or leak into a rerun
    (tmp_path / "o_text_document.bin.partial").write_bytes(b"junk" * 100)
    tokenize_files([MULTI], tmp_path / "o", hf, append_eod=True, batch_documents=5)
    assert same_dataset(tmp_path / "o_text_document", multi_ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o_text_document.bin",
                                                          "o_text_document.idx"]


def test_reader_error_midway_removes_partial_output(tmp_path, hf):
    src = tmp_path / "late.jsonl"
    src.write_text('{"text": "ok"}\n' * 50 + "{broken\n")
    with pytest.raises(InputError, match=":51: not valid JSON"):
        tokenize_files([src], tmp_path / "o", hf, batch_documents=7)
    assert not list(tmp_path.glob("o_*"))


# --------------------------------------------------------------------------- detokenize / retokenize


def test_detokenize_is_hf_decode_without_final_eod(tmp_path, hf, multi_ds):
    out = tmp_path / "d.jsonl"
    result = run("detokenize", multi_ds, "-o", out, "--backend", "hf")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    ref = tokenizers.Tokenizer.from_file(str(bundled_path()))
    with IndexedDataset(multi_ds) as ds:
        assert len(lines) == ds.num_documents
        for i, line in enumerate(lines):
            ids = ds[i].tolist()
            assert ids[-1] == 0
            assert line == {"text": ref.decode(ids[:-1], skip_special_tokens=False)}
    specials = [x["text"] for x in lines if "<|endoftext|>" in x["text"]]
    assert specials and "<|endoftext|><|endoftext|>" in specials  # kept inside documents
    # round trip: text -> tokens -> text -> tokens is the identity on the tokens
    result = run("tokenize", out, "-o", tmp_path / "again", "--backend", "hf", "--append-eod")
    assert result.exit_code == 0, result.output
    assert same_dataset(tmp_path / "again_text_document", multi_ds)
    # stdout
    result = run("detokenize", multi_ds, "--backend", "hf")
    assert result.exit_code == 0 and result.stdout == out.read_text(encoding="utf-8")


def test_detokenize_cpu_equals_hf(tmp_path, multi_ds):
    assert run("detokenize", multi_ds, "-o", tmp_path / "c.jsonl").exit_code == 0
    assert run("detokenize", multi_ds, "-o", tmp_path / "h.jsonl", "--backend", "hf").exit_code == 0
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "h.jsonl").read_bytes()


def test_retokenize_same_tokenizer_is_identity(tmp_path, multi_ds):
    for backend in ("hf", "cpu"):
        out = tmp_path / backend
        result = run("retokenize", multi_ds, "-t", "bundled", "-o", out, "--backend", backend)
        assert result.exit_code == 0, result.output
        assert same_dataset(f"{out}_text_document", multi_ds)  # tokenize's naming rule


@pytest.mark.parametrize("backend", ["hf", "cpu"])
def test_retokenize_keeps_documents_without_eod_and_empty_ones(tmp_path, hf, backend):
    docs = [np.array(hf.encode("hello world").tolist() + [0]), np.array([], dtype=np.int64),
            np.array(hf.encode("no eod here").tolist()), np.array([0]),
            # a document cut inside a character (a lone lead byte), and one of only an
            # EOD: the UTF-8 path rebuilds the first with U+FFFD, as decode does
            np.array(hf.encode("caf").tolist() + [127, 0]),  # 127: the byte 0xC3 alone
            np.array([0])]
    tok = load_tokenizer(backend=backend)
    with DatasetBuilder(tmp_path / "src", np.uint16) as b:
        for d in docs:
            b.add_document(d)
        b.end_document()  # a document without any sequence
    retokenize(tmp_path / "src", tok, tok, tmp_path / "out")
    with IndexedDataset(tmp_path / "src") as src, IndexedDataset(tmp_path / "out") as out:
        src_docs = [d for batch in dataset_documents(src) for d in batch]
        out_docs = [d for batch in dataset_documents(out) for d in batch]
    assert len(out_docs) == len(src_docs) == len(docs) + 1
    assert src_docs[-1] is None and out_docs[-1] is None
    for s, o in zip(src_docs[:-1], out_docs[:-1]):
        body = s.tolist()
        ended = bool(body) and body[-1] == 0
        text = hf.decode(body[:-1] if ended else body)
        assert o.tolist() == hf.encode(text).tolist() + [0] * ended


@pytest.mark.parametrize("backend", ["hf", "cpu"])
def test_retokenize_all_documents_ended_equals_decode_then_encode(tmp_path, hf, multi_ds,
                                                                  backend):
    # the one-write path (every document one sequence ending in an EOD), with documents
    # whose decode is not valid UTF-8 mixed in
    tok = load_tokenizer(backend=backend)
    with IndexedDataset(multi_ds) as src:
        docs = [src[i].tolist() for i in range(src.num_documents)]
    docs += [hf.encode("\u00e9t\u00e9").tolist() + [127, 0], [127, 0], [0], [50000, 0]]
    with DatasetBuilder(tmp_path / "src", np.uint16) as b:
        for d in docs:
            b.add_document(np.array(d))
    retokenize(tmp_path / "src", tok, tok, tmp_path / "out")
    with IndexedDataset(tmp_path / "out") as out:
        assert out.num_documents == len(docs)
        for i, d in enumerate(docs):
            assert out[i].tolist() == hf.encode(hf.decode(d[:-1])).tolist() + [0], i


def _tiny_tokenizer(path: Path) -> Path:
    """A small byte-level BPE trained here (a different vocabulary, EOD id 0)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [json.loads(x)["text"] for x in MULTI.read_text(encoding="utf-8").split("\n") if x]
    tok.train_from_iterator([t if isinstance(t, str) else " ".join(t) for t in texts], trainer)
    tok.save(str(path))
    return path


@pytest.mark.parametrize("backend", ["hf", "cpu"])
def test_retokenize_to_another_tokenizer(tmp_path, hf, multi_ds, backend):
    new_file = _tiny_tokenizer(tmp_path / "tiny.json")
    result = run("retokenize", multi_ds, "-t", new_file, "-o", tmp_path / "re", "--json",
                 "--backend", backend)
    assert result.exit_code == 0, result.output
    new = tokenizers.Tokenizer.from_file(str(new_file))
    new_eod = new.token_to_id("<|endoftext|>")
    with IndexedDataset(multi_ds) as src, IndexedDataset(tmp_path / "re_text_document") as out:
        assert out.num_documents == src.num_documents
        for i in range(src.num_documents):
            text = hf.decode(src[i][:-1])
            expected = new.encode(text, add_special_tokens=False).ids + [new_eod]
            assert out[i].tolist() == expected
            assert new.decode(out[i].tolist()[:-1], skip_special_tokens=False) == text


def test_add_documents_equals_add_document(tmp_path):
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 9, size=30)
    flat = rng.integers(0, 60000, size=int(lengths.sum())).astype(np.uint16)
    with DatasetBuilder(tmp_path / "a", np.uint16) as b:
        b.add_documents(flat[:10], [3, 7])
    with DatasetBuilder(tmp_path / "b", np.uint16) as b:
        b.add_document(flat[:3])
        b.add_document(flat[3:10])
    assert same_dataset(tmp_path / "a", tmp_path / "b")
    with DatasetBuilder(tmp_path / "c", np.uint16) as b:
        b.add_documents(flat, lengths)
    with DatasetBuilder(tmp_path / "d", np.uint16) as b:
        pos = 0
        for n in lengths.tolist():
            b.add_document(flat[pos : pos + n])
            pos += n
    assert same_dataset(tmp_path / "c", tmp_path / "d")


def test_stdin_stream_object(tmp_path, hf):
    stream = io.BytesIO(b'{"text": "from a stream"}\n')
    docs = list(read_documents(["-"], stdin=stream))
    assert [(d.text, d.source, d.line) for d in docs] == [("from a stream", "<stdin>", 1)]


@pytest.mark.slow
def test_stdlib_corpus_cpu_hf_oracle_and_round_trips(tmp_path):
    """Thousands of real documents: cpu == hf == oracle; retokenize and
    detokenize -> tokenize are the identity."""
    from pythia_data.demo import stdlib_documents

    docs = stdlib_documents(limit=100_000)
    src = tmp_path / "stdlib.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    oracle = neox_preprocess([src], tmp_path / "oracle")
    for backend in ("cpu", "hf"):
        result = run("tokenize", src, "-o", tmp_path / backend, "--backend", backend,
                     "--append-eod")
        assert result.exit_code == 0, result.output
        assert same_dataset(tmp_path / f"{backend}_text_document", oracle)
    assert run("retokenize", oracle, "-t", "bundled", "-o", tmp_path / "re").exit_code == 0
    assert same_dataset(tmp_path / "re_text_document", oracle)
    assert run("detokenize", oracle, "-o", tmp_path / "d.jsonl").exit_code == 0
    assert run("tokenize", tmp_path / "d.jsonl", "-o", tmp_path / "rt", "--append-eod").exit_code == 0
    assert same_dataset(tmp_path / "rt_text_document", oracle)


def test_progress_json_summary_and_bar(tmp_path, monkeypatch):
    """The command's bar (the package's progress factory) counts the input bytes of the
    work units as they finish; --json still prints the summary."""
    import contextlib

    import pythia_data.cli.tokenize_cmds as cmds

    bars, seen = [], []

    def factory(quiet):
        @contextlib.contextmanager
        def bar(desc, total, unit="it"):
            bars.append((desc, total, unit))
            yield seen.append
        return bar

    monkeypatch.setattr(cmds, "progress_factory", factory)
    result = run("tokenize", MULTI, "-o", tmp_path / "o", "--backend", "hf", "--json",
                 "--unit-size", "1k")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["documents"] == 40 and summary["inputs"] == 1 and summary["eod"] is None
    assert summary["units"] > 1
    assert bars == [("tokenize", os.path.getsize(MULTI), "B")]
    assert sum(seen) == os.path.getsize(MULTI) and len(seen) == summary["units"]


def test_cli_refusals(tmp_path, multi_ds):
    _fail(run("tokenize", MULTI, "-o", tmp_path / "o", "--backend", "cuda"), "cuda")
    out = tmp_path / "d.jsonl"
    out.write_text("keep")
    _fail(run("detokenize", multi_ds, "-o", out, "--backend", "hf"), "already exists")
    assert out.read_text() == "keep"
    assert run("detokenize", multi_ds, "-o", out, "--backend", "hf", "--force").exit_code == 0
    named = tmp_path / "x_text_document"  # -o x names it (tokenize's rule): the input
    for suffix in (".bin", ".idx"):
        shutil.copyfile(f"{multi_ds}{suffix}", f"{named}{suffix}")
    _fail(run("retokenize", named, "-t", "bundled", "-o", tmp_path / "x", "--backend", "hf"),
          "also the input")


def test_write_behind_keeps_order_raises_the_first_error_and_stops():
    """The writer thread behind write_part: items written in order; an error there is
    raised in the caller (next put or close), later items are not written; abort drops
    what waits and leaves no thread."""
    import threading
    import time

    from pythia_data.errors import OutputError
    from pythia_data.tokenize.pipeline import _WriteBehind

    done = []
    w = _WriteBehind(done.append)
    for i in range(50):
        w.put(i)
    w.close()
    assert done == list(range(50))

    def fail_at_3(item):
        if item == 3:
            raise OutputError("cannot write x: No space left on device")
        done.append(item)

    done.clear()
    w = _WriteBehind(fail_at_3)
    with pytest.raises(OutputError, match="No space"):
        for i in range(1000):
            w.put(i)
            time.sleep(0.001)
        w.close()
    w.abort()
    assert done == [0, 1, 2]

    gate = threading.Event()
    w = _WriteBehind(lambda item: gate.wait(5) and done.append(item))
    done.clear()
    w.put("slow")  # taken by the thread, waits on the gate
    time.sleep(0.05)
    w.put("queued")
    aborting = threading.Thread(target=w.abort)  # waits for the write in progress
    aborting.start()
    time.sleep(0.05)
    gate.set()
    aborting.join(10)
    assert done == ["slow"]  # the write in progress finished, the queued one was dropped
    assert "queued" not in done
    assert not any(t.name == "pythia-data-writer" and t.is_alive()
                   for t in threading.enumerate())


def test_reused_id_buffers_never_overwrite_a_batch_before_it_is_written(tmp_path, hf,
                                                                        monkeypatch):
    """The cpu writer reuses the id buffers the writer thread is done with: with a slow
    writer and many batches of the block reader, every batch is still written as it was
    encoded (the bytes equal the hf backend's), and buffers were reused."""
    import time as _time

    from pythia_data.tokenize import pipeline as pl

    lines = [json.dumps({"text": f"doc {i}: " + "wörd and text " * (5 + i % 7)})
             for i in range(300)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ref = tokenize_files([str(src)], tmp_path / "ref", hf, append_eod=True)["output"]
    real = pl._write_batch
    used = []

    def slow(builder, ids, lengths):
        used.append(ids.base if ids.base is not None else ids)
        _time.sleep(0.003)
        return real(builder, ids, lengths)

    monkeypatch.setattr(pl, "_write_batch", slow)
    monkeypatch.setattr(pl, "RAMP", 1)  # every batch at the limits from the first
    cpu = load_tokenizer(backend="cpu", workers=2)
    out = tokenize_files([str(src)], tmp_path / "reuse", cpu, append_eod=True,
                         batch_documents=9)["output"]
    assert same_dataset(out, ref)
    assert len(used) >= 30
    assert len({id(b) for b in used}) <= len(used) // 3  # a few buffers, reused


def test_encode_utf8_documents_out_buffer():
    cpu = load_tokenizer(backend="cpu", workers=1)
    data = np.frombuffer("one two three vier fünf".encode(), dtype=np.uint8)
    offsets = np.array([0, 7, data.size], dtype=np.int64)
    want, want_len = cpu.encode_utf8_documents(data, offsets, dtype=np.uint16, eod=0)
    room = np.full(want.size + 5, 9, dtype=np.uint16)
    ids, lengths = cpu.encode_utf8_documents(data, offsets, dtype=np.uint16, eod=0, out=room)
    assert ids.base is room and ids.tolist() == want.tolist()
    assert (room[want.size:] == 9).all() and lengths.tolist() == want_len.tolist()
    small = np.zeros(2, dtype=np.uint16)  # no room: a new array, ``small`` untouched
    ids, _ = cpu.encode_utf8_documents(data, offsets, dtype=np.uint16, eod=0, out=small)
    assert ids.base is not small and ids.tolist() == want.tolist() and not small.any()
    with pytest.raises(UsageError, match="out must be"):
        cpu.encode_utf8_documents(data, offsets, dtype=np.uint16, out=np.zeros(99, np.int32))


def test_retokenize_batch_of_sequences_ends_only_the_documents_that_ended(tmp_path, hf):
    """Every document one sequence (the whole batch written at once): the new EOD ends
    exactly the documents that ended in the old one; empty and EOD-only documents kept."""
    new_file = _tiny_tokenizer(tmp_path / "tiny.json")
    new = tokenizers.Tokenizer.from_file(str(new_file))
    texts = ["hello world", "", "no eod here", "", "é ü 中文 tail", "last one"]
    ends = [True, False, False, True, True, False]
    with DatasetBuilder(tmp_path / "src", np.uint16) as b:
        for text, end in zip(texts, ends):
            b.add_document(np.array(hf.encode(text).tolist() + ([0] if end else []),
                                    dtype=np.int64))
    result = run("retokenize", tmp_path / "src", "-t", new_file, "-o", tmp_path / "re",
                 "--backend", "cpu")
    assert result.exit_code == 0, result.output
    eod = new.token_to_id("<|endoftext|>")
    with IndexedDataset(tmp_path / "re_text_document") as out:
        assert out.num_documents == len(texts)
        for i, (text, end) in enumerate(zip(texts, ends)):
            want = new.encode(text, add_special_tokens=False).ids + ([eod] if end else [])
            assert out[i].tolist() == want
