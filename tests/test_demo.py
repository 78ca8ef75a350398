"""The embedded demo: deterministic, idempotent, in Pythia's layout."""

from __future__ import annotations

import hashlib

import numpy as np
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.demo import BASE, build_demo
from pythia_data.indexed import IndexedDataset


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
    assert "tokens" in result.stdout
    again = CliRunner().invoke(cli, ["demo", str(tmp_path / "d")])
    assert again.exit_code == 0 and "reused" in again.stdout
