"""bin/batch_viewer.py: the same indicies.npy as Pythia's viewer (inclusive end)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from pythia_data.dataset import DatasetBuilder
from tests.conftest import REPO, subprocess_env

SCRIPT = REPO / "bin" / "batch_viewer.py"
SEQ = 2049
BATCH = 1024


def _load_viewer():
    spec = importlib.util.spec_from_file_location("batch_viewer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def preshuffled(tmp_path_factory):
    """3 iterations of 1024 x 2049 uint16 tokens; sequence s, token p = (7s + p) % 65536."""
    folder = tmp_path_factory.mktemp("pre")
    with DatasetBuilder(folder / "document", dtype=np.uint16) as builder:
        for s in range(3 * BATCH):
            builder.add_document(((7 * s + np.arange(SEQ)) % 65536).astype(np.uint16))
    return folder / "document"


def pythia_method(prefix, start, end, save):
    """Pythia's viewer after pythia#187: np.save of a slice of the mapped sequences."""
    data = np.memmap(f"{prefix}.bin", dtype=np.uint16, mode="r").reshape(-1, SEQ)
    np.save(save, data[start * BATCH : (end + 1) * BATCH])


@pytest.mark.parametrize(("start", "end"), [(0, 0), (1, 2), (0, 2), (2, 2)])
def test_identical_to_pythia(tmp_path, preshuffled, start, end):
    viewer = _load_viewer()
    save = tmp_path / "out"
    code = viewer.main(
        [
            "--start_iteration",
            str(start),
            "--end_iteration",
            str(end),
            "--load_path",
            str(preshuffled),
            "--save_path",
            str(save),
            "--conf_dir",
            "utils/dummy_config.yml",
        ]
    )
    assert code == 0
    pythia_method(preshuffled, start, end, tmp_path / "ref.npy")
    got = (save / "indicies.npy").read_bytes()
    assert got == (tmp_path / "ref.npy").read_bytes()
    arr = np.load(save / "indicies.npy")
    assert arr.shape == ((end - start + 1) * BATCH, SEQ)
    assert arr[0, 0] == (7 * start * BATCH) % 65536


def test_positional_load_path_and_default_end(tmp_path, preshuffled):
    viewer = _load_viewer()
    code = viewer.main(
        [
            str(preshuffled) + ".bin",
            "--start_iteration",
            "1",
            "--save_path",
            str(tmp_path / "s"),
            "--quiet",
        ]
    )
    assert code == 0
    assert np.load(tmp_path / "s" / "indicies.npy").shape == (2 * BATCH, SEQ)


@pytest.mark.slow
def test_subprocess_errors_one_line(tmp_path, preshuffled, capsys):
    cases = (
        (["--start_iteration", "0", "--end_iteration", "3"], "past the end"),
        (["--start_iteration", "2", "--end_iteration", "1"], "after end"),
        (["--start_iteration", "-1", "--end_iteration", "1"], ">= 0"),
    )
    argv = [str(preshuffled), "--save_path", str(tmp_path / "e")]
    # one real process (what a user runs) ...
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv, *cases[0][0]],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and cases[0][1] in proc.stderr
    # ... and every case through the same entry point in this process
    viewer = _load_viewer()
    for extra, needle in cases:
        assert viewer.main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
        assert not (tmp_path / "e" / "indicies.npy").exists()


def test_missing_load_path_is_usage_error(capsys):
    viewer = _load_viewer()
    with pytest.raises(SystemExit) as info:
        viewer.main(["--start_iteration", "0"])
    assert info.value.code == 2
