"""The ``cuda`` backend slot (not implemented yet).

It is meant to run the same pipeline as the ``cpu`` backend with numba.cuda kernels; every
table the cpu engine uses (code point classes, NFC tables, byte -> id, the merge-rank hash
table keyed by (left_id, right_id)) is a plain numpy array for that reason
(:class:`pythia_data.tokenize.cpu.EngineTables`).
"""

from __future__ import annotations

from pythia_data.errors import UsageError


class CudaTokenizer:
    backend = "cuda"

    def __init__(self, config, **options):
        raise UsageError("the cuda backend is not available yet (use backend='cpu')")
