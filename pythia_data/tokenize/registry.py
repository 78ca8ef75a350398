"""Backend registry: name -> "module:Class" (imported only when used)."""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "cpu": "pythia_data.tokenize.cpu:CpuTokenizer",
    "hf": "pythia_data.tokenize.hf:HFTokenizer",
    "cuda": "pythia_data.tokenize.cuda:CudaTokenizer",
}
