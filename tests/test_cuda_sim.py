"""Run the cuda backend's tests (tests/cuda/) under Numba's CUDA simulator in a subprocess.

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is first imported, so the simulator run
needs its own interpreter; this test makes a plain ``pytest`` cover the device kernels on
machines without a GPU. (On a GPU machine ``tests/cuda/`` also runs on the device itself.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env


def test_no_gpu_backend_error_is_one_line():
    from pythia_data.errors import UsageError
    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.cuda import cuda_status

    if cuda_status()[0]:
        pytest.skip("a CUDA device (or the simulator) is usable here")
    with pytest.raises(UsageError) as info:
        load_tokenizer(backend="cuda")
    message = str(info.value)
    assert "\n" not in message
    assert "pythia-data[cuda]" in message


@pytest.mark.slow  # a whole pytest run in a subprocess (~6 s of CPU): .ci/run runs it
def test_cuda_kernels_under_the_simulator():
    pytest.importorskip("tokenizers")
    env = subprocess_env()
    env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "cuda")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    tail = (proc.stdout[-6000:] + proc.stderr[-3000:])
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, tail


def test_route_table_clears_only_nfc_inert_code_points():
    """Every code point the cuda backend keeps on the device (although NFC may act on it in
    general) survives the engine's NFC unchanged in any neighbourhood we can build from such
    code points; a few it must route are routed."""
    import random

    import numpy as np

    from pythia_data.tokenize import load_tokenizer
    from pythia_data.tokenize.cpu import nfc_bytes
    from pythia_data.tokenize.cuda import route_table

    cpu = load_tokenizer(backend="cpu", workers=1)
    route = route_table(cpu)
    flagged = cpu.unicode_eff.nfc_flag.astype(bool)
    cleared = [chr(c) for c in np.nonzero(flagged & (route == 0))[0]]
    assert len(cleared) > 10000  # precomposed letters, Hangul syllables, ...
    assert "\u00e9" in cleared and "\uac00" in cleared
    for c in ("\u0301", "\u212b", "\u1161", "\u11a8", "\u0f73", "\u0344"):
        assert route[ord(c)] == 1, hex(ord(c))
    rng = random.Random(0)
    texts = ["".join(cleared), "".join(reversed(cleared))]
    for _ in range(20):
        sample = rng.sample(cleared, 2000) + ["a", "e", "\u1100", " ", "\u0915"] * 50
        rng.shuffle(sample)
        texts.append("".join(sample))
    assert nfc_bytes(texts) == texts
