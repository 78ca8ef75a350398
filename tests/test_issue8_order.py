"""Issue 8, edges 2, 3, 4 and 10: the order commands' rough edges."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli.app import cli
from pythia_data.dataset import write_dataset
from pythia_data.order import OrderParams, cache_paths, load_neox_config
from pythia_data.order import neox_config as neox_config_module
from tests.conftest import position_docs

OPTS = ["--train-iters", "3", "--batch-size", "2", "--seq-length", "8", "--seed", "3"]
PARAMS = OrderParams(3, 2, 8, 3)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def data(tmp_path):
    sizes = [5, 17, 3, 40, 1, 9, 26, 12, 7, 2]
    folder = tmp_path / "data"
    folder.mkdir()
    return write_dataset(folder / "ds", position_docs(sizes), dtype=np.uint16)


# -- edge 2: --index-dir is created


@pytest.mark.parametrize(("command", "extra"), [(["order", "build"], []), (["locate"], ["-d", "1"])])
def test_index_dir_is_created_with_parents(data, tmp_path, command, extra):
    index_dir = tmp_path / "new" / "nested" / "index"
    result = run(*command, data, *extra, *OPTS, "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    paths = cache_paths(data, PARAMS, index_dir)
    assert all(os.path.isfile(paths[n]) for n in ("doc_idx", "sample_idx", "shuffle_idx"))


def test_batches_creates_index_dir(data, tmp_path):
    index_dir = tmp_path / "a" / "b"
    out = tmp_path / "o.npy"
    result = run("batches", data, *OPTS, "--index-dir", index_dir, "-s", "0", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert index_dir.is_dir() and out.is_file()


# -- edge 3: read-only data


@pytest.fixture
def read_only(data, monkeypatch, tmp_path):
    """Make the data folder refuse new files with EROFS (as a read-only mount does, even
    for root), and point the per-user cache at tmp_path."""
    folder = os.path.realpath(os.path.dirname(data))
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        target = os.path.realpath(os.fspath(path))
        if flags & os.O_CREAT and os.path.dirname(target) == folder:
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setenv("PYTHIA_DATA_CACHE", str(tmp_path / "usercache"))
    return data


def _fallback(data) -> dict:
    from pythia_data.order.cache import user_cache_folder

    return cache_paths(data, PARAMS, user_cache_folder(data))


def test_order_build_on_read_only_data_uses_user_cache(read_only, tmp_path):
    result = run("order", "build", read_only, *OPTS)
    assert result.exit_code == 0, result.output
    fallback = _fallback(read_only)
    assert str(tmp_path / "usercache" / "index") in fallback["meta"]
    assert all(os.path.isfile(fallback[n]) for n in ("doc_idx", "sample_idx", "shuffle_idx"))
    assert "is not writable" in result.stderr and os.path.dirname(fallback["meta"]) in result.stderr
    again = run("order", "build", read_only, *OPTS, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["source"] == "cache"


def test_batches_and_locate_on_read_only_data(read_only, tmp_path):
    out = tmp_path / "o.npy"
    result = run("batches", read_only, *OPTS, "-s", "0", "-o", out)
    assert result.exit_code == 0, result.output
    assert "not writable" in result.stderr and out.is_file()
    quiet = run("batches", read_only, *OPTS, "-s", "0", "-o", out, "-q", "--force")
    assert quiet.exit_code == 0 and quiet.stderr == ""  # -q: no notes
    located = run("locate", read_only, *OPTS, "-d", "3", "--json")
    assert located.exit_code == 0, located.output
    assert json.loads(located.stdout)["hits"]
    verify = run("order", "verify", read_only, *OPTS, "-q")
    assert verify.exit_code == 0, verify.output


def test_read_only_folder_by_permissions(data, tmp_path, monkeypatch):
    """The real thing where chmod blocks writes (not as root)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions (covered by the EROFS test)")
    monkeypatch.setenv("PYTHIA_DATA_CACHE", str(tmp_path / "usercache"))
    folder = Path(data).parent
    folder.chmod(0o555)
    try:
        result = run("order", "build", data, *OPTS)
    finally:
        folder.chmod(0o755)
    assert result.exit_code == 0, result.output
    assert os.path.isfile(_fallback(data)["shuffle_idx"])


# -- edge 4: defaults that fit no small dataset


def test_too_small_dataset_names_the_order_flags(data, tmp_path):
    result = run("batches", data, "-s", "0", "-o", tmp_path / "x.npy", "-q")
    assert result.exit_code == 2
    for flag in ("--train-iters", "--batch-size", "--config"):
        assert flag in result.output
    assert "One epoch of this dataset holds" in result.output


def test_demo_commands_carry_the_order_flags(tmp_path):
    from pythia_data.demo import DemoFiles, demo_commands

    files = DemoFiles(tmp_path, tmp_path / "source", tmp_path / "source" / "d",
                      tmp_path / "source" / "m.txt", [tmp_path / "source" / "d-00000-of-00000.bin"],
                      False)
    commands = demo_commands(files, document=4)
    assert set(commands) == {"checksum", "unshard", "info", "order", "batches", "locate"}
    for step in ("order", "batches", "locate"):
        assert "--train-iters 100" in commands[step] and "--batch-size 8" in commands[step]
        assert "--index-dir" in commands[step]
    assert commands["locate"].endswith("-d 4")


# -- edge 10: small wrong messages


def test_order_build_on_neox_cache_names_no_missing_sidecar(data):
    assert run("order", "build", data, *OPTS).exit_code == 0
    meta = cache_paths(data, PARAMS)["meta"]
    os.unlink(meta)  # what GPT-NeoX leaves: the three .npy files only
    result = run("order", "build", data, *OPTS)
    assert result.exit_code == 0, result.output
    assert "GPT-NeoX cache" in result.stdout
    assert "_pythia_meta.json" not in result.stdout


def test_order_verify_without_cache_says_missing(data):
    result = run("order", "verify", data, *OPTS)
    assert result.exit_code == 1
    assert "missing" in result.stderr and "does not match" not in result.stderr


def test_locate_on_preshuffled_dataset_matches_batches(tmp_path):
    seq = 8
    docs = [np.arange(k * 100, k * 100 + seq + 1, dtype=np.int64) for k in range(12)]
    data = write_dataset(tmp_path / "pre", docs, dtype=np.uint16)
    opts = ["--batch-size", "4", "--seq-length", str(seq), "--train-iters", "3"]
    located = run("locate", data, *opts, "-d", "5", "--json")
    assert located.exit_code == 0, located.output
    hits = json.loads(located.stdout)["hits"]
    assert [(h["iteration"], h["batch_position"], h["sample"]) for h in hits] == [(1, 1, 5)]
    out = tmp_path / "b.npy"
    assert run("batches", data, *opts, "-s", "1", "-o", out, "-q").exit_code == 0
    assert np.load(out)[1].tolist() == docs[5].tolist()
    explicit = run("locate", data, *opts, "-d", "5", "--order", "preshuffled")
    assert explicit.exit_code == 0, explicit.output
    assert explicit.stdout.splitlines()[1].startswith("1 1 5 ")


def test_neox_config_has_no_defaults_of_its_own(tmp_path):
    cfg_file = tmp_path / "c.yml"
    cfg_file.write_text("train-iters: 12\n")
    cfg = load_neox_config(cfg_file)
    assert cfg.seq_length is None and cfg.seed is None  # unset in GPT-NeoX v1.0
    assert OrderParams.from_config(cfg_file) == OrderParams(train_iters=12)
    source = Path(neox_config_module.__file__).read_text()
    assert "2048" not in source and "1234" not in source.replace("defaults to 1234", "")
