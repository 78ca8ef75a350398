"""The embedded demo: deterministic, idempotent, in Pythia's layout."""

from __future__ import annotations

import hashlib

import numpy as np
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import IndexedDataset
from pythia_data.demo import BASE, DEMO_BATCH_SIZE, DEMO_SEQ_LENGTH, build_demo, run_demo


def test_demo_layout_and_determinism(tmp_path):
    first = build_demo(tmp_path / "a")
    second = build_demo(tmp_path / "b")
    assert not first.reused
    names = sorted(p.name for p in first.shards)
    last = len(names) - 1
    assert names == [f"{BASE}-{k:05d}-of-{last:05d}.bin" for k in range(last + 1)]
    for p, q in zip(first.shards, second.shards):
        assert p.read_bytes() == q.read_bytes()
    # manifest lines are Pythia's style: NAME HEX
    manifest = dict(line.split() for line in first.manifest.read_text().splitlines())
    for shard in first.shards:
        assert manifest[shard.name] == hashlib.sha256(shard.read_bytes()).hexdigest()
    whole = b"".join(p.read_bytes() for p in first.shards)
    assert manifest[f"{BASE}.bin"] == hashlib.sha256(whole).hexdigest()
    with IndexedDataset(first.prefix) as ds:
        assert ds.num_documents >= 1000 and ds.dtype == np.uint16
        assert len(set(ds.sizes.tolist())) > 100  # varied lengths
        assert ds.bin_bytes == len(whole)


def test_demo_is_idempotent_and_repairs(tmp_path):
    build_demo(tmp_path)
    again = build_demo(tmp_path)
    assert again.reused
    shard = again.shards[0]
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    repaired = build_demo(tmp_path)
    assert not repaired.reused
    assert build_demo(tmp_path).reused


def test_demo_cli(tmp_path):
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "tokens" in out and "4 files: 4 OK" in out and "3/3 shard SHA256s verified" in out
    assert "training order (GPT-NeoX v1.0), built" in out
    assert "read from the shards in place instead: identical" in out
    assert "real text:" in out and "standard-library docstrings" in out
    assert "iteration 0, row 0" in out and "  | " in out
    assert (tmp_path / "d" / "batches" / "text_iteration_0.txt").is_file()
    dumped = np.load(tmp_path / "d" / "batches" / "iterations_0-1.npy")
    assert dumped.shape == (2 * DEMO_BATCH_SIZE, DEMO_SEQ_LENGTH + 1)
    assert dumped.dtype == np.uint16
    again = CliRunner().invoke(cli, ["demo", str(tmp_path / "d")])
    assert again.exit_code == 0 and "reused" in again.stdout
    assert "loaded from its checked cache" in again.stdout
    assert np.array_equal(np.load(tmp_path / "d" / "batches" / "iterations_0-1.npy"), dumped)


def test_run_demo_batches_follow_the_order(tmp_path):
    """The dumped rows are the order's samples: each is seq_length + 1 consecutive tokens
    of the shuffled document stream that sample_idx/shuffle_idx point at."""
    run = run_demo(tmp_path)
    order = run.order
    with IndexedDataset(run.merged_prefix) as ds:
        docs = [ds[i] for i in range(len(ds))]
    for row in range(2 * DEMO_BATCH_SIZE):
        j = int(order.shuffle_idx[row])
        (p0, o0), (p1, o1) = order.sample_idx[j], order.sample_idx[j + 1]
        pieces = [docs[order.doc_idx[p]] for p in range(p0, p1 + 1)]
        pieces[-1] = pieces[-1][: o1 + 1]
        pieces[0] = pieces[0][o0:]
        np.testing.assert_array_equal(np.concatenate(pieces), run.batches[row])
    assert run.shards_agree
    assert run.unshard.verified
    assert (run.merged_prefix.with_suffix(".bin")).stat().st_size == run.stats["bin_bytes"]
    assert any(r["iteration"] == 0 and r["batch_position"] == 0 for r in run.located)


def test_text_demo_real_text_as_text(tmp_path):
    """The real-text part: stdlib docstrings tokenized with the bundled tokenizer (as
    preprocess_data.py would, EOD appended), one iteration dumped as text."""
    from pythia_data.demo import TEXT_BATCH_SIZE, build_text_demo, stdlib_documents

    text = build_text_demo(tmp_path)
    docs = stdlib_documents()
    assert 200 <= len(docs) == text.summary["documents"]
    assert stdlib_documents() == docs  # deterministic
    tok = text.tokenizer
    with IndexedDataset(text.prefix) as ds:
        assert ds.num_documents == len(docs) and ds.dtype == np.uint16
        for i in (0, len(docs) // 2, len(docs) - 1):
            assert ds[i].tolist() == tok.encode(docs[i]).tolist() + [tok.eod_id]
    body = text.text_path.read_text(encoding="utf-8")
    assert body.startswith("# iteration 0 row 0\n" + text.row_text + "\n# iteration 0 row 1\n")
    assert body.count("# iteration 0 row ") == TEXT_BATCH_SIZE
    assert text.row_tokens.size == text.order.params.seq_length + 1
    assert tok.decode(text.row_tokens) == text.row_text
    from pythia_data.cli import cli as group

    again = tmp_path / "again.txt"
    args = text.command.split()[1:]
    args[args.index("-o") + 1] = str(again)
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == text.text_path.read_bytes()
    try:
        import tokenizers
    except ImportError:
        return
    from pythia_data.tokenize.spec import bundled_path

    ref = tokenizers.Tokenizer.from_file(str(bundled_path()))
    assert ref.decode(text.row_tokens.tolist(), skip_special_tokens=False) == text.row_text
    with IndexedDataset(text.prefix) as ds:
        assert ds[len(docs) - 1].tolist() == ref.encode(docs[-1]).ids + [0]
