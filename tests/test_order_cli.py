"""``order build`` / ``order verify`` through click's CliRunner and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli.app import cli
from pythia_data.dataset import write_dataset
from pythia_data.order import OrderParams, cache_paths
from tests.conftest import DATA, position_docs, subprocess_env
from tests.test_order_reference import known_answers

KA = known_answers()
CASE = KA["cases"][1]  # num_samples 70 = ceil(69 * 1.005), seq_length 8, seed 3, 3 epochs
OPTS = ["--train-iters", "69", "--batch-size", "1", "--seq-length", "8", "--seed", "3"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def data(tmp_path):
    return write_dataset(tmp_path / "ka", position_docs(KA["sizes"]), dtype=np.uint16)


def test_build_then_reuse(data):
    result = run("order", "build", data, *OPTS)
    assert result.exit_code == 0, result.output
    assert "epochs         3" in result.stdout and "94 in the index" in result.stdout
    assert "wrote" in result.stdout
    paths = cache_paths(data, OrderParams(69, 1, 8, 3))
    assert np.load(paths["shuffle_idx"]).tolist() == CASE["shuffle_idx"]
    again = run("order", "build", data, *OPTS, "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["source"] == "cache" and summary["num_epochs"] == 3
    assert summary["total_samples"] == 94 and summary["dtypes"]["shuffle_idx"] == "uint32"
    assert summary["files"]["doc_idx"] == paths["doc_idx"]


def test_build_with_config_and_index_dir(data, tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text('{"train-iters": 69, "seq-length": 8, "seed": 3}')
    folder = tmp_path / "maps"
    folder.mkdir()
    result = run("order", "build", data, "--config", cfg, "--batch-size", "1",
                 "--index-dir", folder, "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert all(p.startswith(str(folder)) for p in files.values())
    assert np.load(files["doc_idx"]).tolist() == CASE["doc_idx"]
    # options override the config
    other = run("order", "build", data, "--config", cfg, "--batch-size", "1", "--seed", "4",
                "--index-dir", folder, "--json")
    assert json.loads(other.stdout)["params"]["seed"] == 4
    pythia = run("order", "build", data, "--config", DATA / "pythia-160m-deduped.yml",
                 "--train-iters", "1", "--batch-size", "2", "--index-dir", folder, "--json")
    assert json.loads(pythia.stdout)["params"] == {
        "train_iters": 1, "batch_size": 2, "seq_length": 2048, "seed": 1234}


def test_verify_ok_and_mismatch(data):
    assert run("order", "build", data, *OPTS).exit_code == 0
    ok = run("order", "verify", data, *OPTS)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.count("OK") == 3 and "a permutation" in ok.stdout
    paths = cache_paths(data, OrderParams(69, 1, 8, 3))
    arr = np.load(paths["shuffle_idx"])
    arr[10:30] = 0
    np.save(paths["shuffle_idx"], arr)
    bad = run("order", "verify", data, *OPTS)
    assert bad.exit_code == 1
    assert "MISMATCH  shuffle_idx" in bad.stdout and "NOT a permutation" in bad.stdout
    first = int(np.flatnonzero(arr != np.array(CASE["shuffle_idx"]))[0])
    assert f"first difference at index {first}" in bad.stdout
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pythia-data: error:")
    report = json.loads(run("order", "verify", data, *OPTS, "--json").stdout)
    assert report["arrays"]["shuffle_idx"]["is_permutation"] is False
    # build refuses the corrupt cache, --force rebuilds it
    refused = run("order", "build", data, *OPTS)
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert run("order", "build", data, *OPTS, "--force").exit_code == 0
    assert run("order", "verify", data, *OPTS).exit_code == 0


def test_verify_missing_files_exit_1(data):
    result = run("order", "verify", data, *OPTS)
    assert result.exit_code == 1 and result.stdout.count("MISSING") == 3


@pytest.mark.parametrize("args", [
    ["--seq-length", "0"], ["--train-iters", "-3"], ["--seed", "-1"], ["--seed", str(2**32)],
    ["--batch-size", "0"], ["--seq-length", "x"],
])
def test_bad_values_exit_2_one_line(data, args):
    result = run("order", "build", data, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pythia-data:")


def test_bad_inputs_exit_2(tmp_path, data):
    assert run("order", "build", tmp_path / "nothing").exit_code == 2
    assert run("order", "build", data, "--config", tmp_path / "no.yml").exit_code == 2
    (tmp_path / "bad.yml").write_text("{[")
    bad = run("order", "build", data, "--config", tmp_path / "bad.yml")
    assert bad.exit_code == 2 and "not valid YAML" in bad.stderr


def test_subprocess_verify_failure_one_line(data):
    env = subprocess_env()
    build = run("order", "build", data, *OPTS)  # (in this process: only verify needs a real one)
    assert build.exit_code == 0, build.output
    paths = cache_paths(data, OrderParams(69, 1, 8, 3))
    arr = np.load(paths["doc_idx"])
    arr[:2] = arr[1::-1]
    np.save(paths["doc_idx"], arr)
    proc = subprocess.run([sys.executable, "-m", "pythia_data", "order", "verify", data, *OPTS],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "doc_idx" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = run("order", "build", data, "--seq-length", "0")
    assert bad.exit_code == 2 and bad.stderr.strip().count("\n") == 0
