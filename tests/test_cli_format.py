"""`info`, `merge`, error mapping, and `demo` through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import IndexedDataset, write_dataset

from .conftest import position_docs, subprocess_env

INFO_KEYS = ["version", "dtype", "num_sequences", "num_documents", "num_tokens", "bin_bytes",
             "min_length", "mean_length", "max_length", "layout", "dtype_convention"]


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_info_json(small_dataset):
    prefix, sizes = small_dataset
    for form in (prefix, prefix + ".bin", prefix + ".idx"):
        result = run("info", form, "--json")
        assert result.exit_code == 0, result.output
        stats = json.loads(result.stdout)
        assert list(stats) == INFO_KEYS
        assert stats["dtype"] == "uint16"
        assert stats["num_sequences"] == stats["num_documents"] == len(sizes)
        assert stats["num_tokens"] == sum(sizes)
        assert stats["bin_bytes"] == 2 * sum(sizes)
        assert (stats["min_length"], stats["max_length"]) == (min(sizes), max(sizes))
        assert stats["mean_length"] == pytest.approx(sum(sizes) / len(sizes))


def test_info_text_and_folder(tmp_path):
    write_dataset(tmp_path / "only", position_docs([3, 4]), np.int32)
    result = run("info", str(tmp_path))
    assert result.exit_code == 0
    assert "int32" in result.stdout and "tokens         7" in result.stdout


def test_info_real_subprocess(small_dataset):
    prefix, sizes = small_dataset
    proc = subprocess.run([sys.executable, "-m", "pythia_data", "info", prefix, "--json"],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_tokens"] == sum(sizes)


BAD = {
    "missing": lambda p: p.parent / "absent",
    "magic": lambda p: _edit(p, 0, b"NOTMAGIC!"),
    "version": lambda p: _edit(p, 9, (7).to_bytes(8, "little")),
    "dtype": lambda p: _edit(p, 17, bytes([42])),
    "truncated": lambda p: _truncate(p.with_suffix(".idx"), 40),
    "count": lambda p: _edit(p, 18, (10**12).to_bytes(8, "little")),
    "negative": lambda p: _edit(p, 34, (-5).to_bytes(4, "little", signed=True)),
    "pointer": lambda p: _edit(p, 34 + 4 * 20 + 8, (10**6).to_bytes(8, "little")),
    "no bin": lambda p: (p.with_suffix(".bin").unlink(), p)[1],
    "bin size": lambda p: _truncate(p.with_suffix(".bin"), 10),
    "doc_idx": lambda p: _edit(p, 34 + 12 * 20 + 8, (9).to_bytes(8, "little")),
}


def _edit(prefix, offset, data):
    idx = prefix.with_suffix(".idx")
    raw = bytearray(idx.read_bytes())
    raw[offset : offset + len(data)] = data
    idx.write_bytes(bytes(raw))
    return prefix


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)
    return path.with_suffix("")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2(small_dataset, case):
    from pathlib import Path

    prefix = Path(small_dataset[0])
    target = BAD[case](prefix)
    result = run("info", str(target))
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pythia-data: error:"), result.stderr
    assert "Traceback" not in result.output


def test_bad_input_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"garbage")
    (tmp_path / "x.bin").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "pythia_data", "info", str(tmp_path / "x")],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "wrong magic" in proc.stderr


def test_merge_cli(tmp_path):
    a = write_dataset(tmp_path / "a", position_docs([2, 3]), np.uint16)
    b = write_dataset(tmp_path / "b", position_docs([4]), np.uint16)
    result = run("merge", str(tmp_path / "m"), a, b)
    assert result.exit_code == 0, result.output
    with IndexedDataset(tmp_path / "m") as ds:
        assert ds.sizes.tolist() == [2, 3, 4]
        assert ds.doc_idx.tolist() == [0, 1, 2, 3]
    c = write_dataset(tmp_path / "c", position_docs([4]), np.int32)
    bad = run("merge", str(tmp_path / "n"), a, c)
    assert bad.exit_code == 2 and "different dtypes" in bad.stderr
    assert not list(tmp_path.glob("n.*"))


def test_every_lazy_command_is_registered():
    from pythia_data.cli import COMMANDS

    ctx = cli.make_context("pythia-data", ["--help"], resilient_parsing=True)
    names = cli.list_commands(ctx)
    assert sorted(COMMANDS) == sorted(names)
    for name in names:
        assert cli.get_command(ctx, name) is not None


def test_checksum_starts_without_numpy_or_numba(tmp_path):
    """Commands load only what they use: hashing needs neither numpy nor numba."""
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    code = (
        "import sys\n"
        "from pythia_data.cli import main\n"
        "try:\n"
        f"    main(['checksum', {str(f)!r}, '--algorithm', 'xxh3'])\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('loaded', sorted(m for m in ('numpy', 'numba') if m in sys.modules), code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), check=True).stdout
    assert out.strip().endswith("loaded [] 0"), out
