"""Backend registry: name -> "module:Class" (imported only when used), and the names of the
invalid-text policies. Import-light: the CLI builds its choices from here."""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "cpu": "pythia_data.tokenize.cpu:CpuTokenizer",
    "hf": "pythia_data.tokenize.hf:HFTokenizer",
    "cuda": "pythia_data.tokenize.cuda:CudaTokenizer",
}

#: What to do with invalid UTF-8 or lone surrogates (see :mod:`pythia_data.tokenize.base`).
ERRORS_POLICIES = ("strict", "replace")
