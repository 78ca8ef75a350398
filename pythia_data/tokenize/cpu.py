"""The ``cpu`` backend (numba engine) - being written; falls back to hf meanwhile."""

from __future__ import annotations


class CpuTokenizer:
    backend = "cpu"

    @staticmethod
    def unsupported_reason(config):
        return "the cpu engine is not finished yet"
