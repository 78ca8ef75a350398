"""The worked example of docs/find.md runs as written (slow: it builds the demo).

The commands are read from the document's first console session and run with bash in a folder
where the demo was built. The demo's documents come from the running Python's standard library, so the
printed iterations are compared exactly only on the Python version the document shows;
on every version the first hit's iteration and row must show the sentence in `batches`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

SENTENCE = "Implements the HMAC algorithm as described by RFC 2104."
DOC_PYTHON = (3, 11)


def _example() -> tuple[str, list[str]]:
    """The worked example's first console session: its commands (the ``$ `` lines) as one
    bash script, and the output shown after them."""
    text = (REPO / "docs" / "find.md").read_text(encoding="utf-8")
    session = re.findall(r"```console\n(.*?)```", text, flags=re.S)[0].splitlines()
    bash = "\n".join(x[2:] for x in session if x.startswith("$ "))
    return bash, [x for x in session if x.strip() and not x.startswith("$ ")]


@pytest.mark.slow
def test_docs_find_example_runs_as_written(tmp_path):
    from pythia_data.demo import run_demo

    bash, expected = _example()
    run_demo(tmp_path / "pythia-demo")
    env = subprocess_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + bash], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() + proc.stderr.splitlines() if x.strip()]
    hits = [x for x in lines if x[:1].isdigit() and SENTENCE in x]
    assert hits, proc.stdout
    if sys.version_info[:2] == DOC_PYTHON:
        assert lines == expected
    # the first hit's row, dumped by `batches`, holds the sentence
    it, index = (int(v) for v in hits[0].split()[:2])
    show = (f'D=pythia-demo/text/stdlib_text_document; O="--train-iters 200 --batch-size 4 '
            f'--seq-length 128 --index-dir pythia-demo/text"; pythia-data batches $D $O -s '
            f"{it} --format text --tokenizer bundled")
    proc = subprocess.run(["bash", "-c", show], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = re.split(r"^# iteration \d+ row (\d+)\n", proc.stdout, flags=re.M)
    by_row = {int(rows[k]): rows[k + 1] for k in range(1, len(rows) - 1, 2)}
    assert SENTENCE in by_row[index]
