"""Type-check every cuda kernel by compiling it to PTX (no GPU needed; needs numba-cuda with
its NVVM, i.e. ``pip install 'pythia-data[cuda]'``).

The CUDA simulator runs kernels as Python and so never type-checks them; this does, with the
argument types the cuda backend passes. Usage: ``python tools/cuda_compile_check.py [cc]``
(compute capability, default 9.0). Exit status 1 on the first kernel that does not compile."""

from __future__ import annotations

import sys

from numba import types
from numba.cuda import compile_ptx

from pythia_data.kernels import cuda_bpe as kb
from pythia_data.kernels import cuda_pretokenize as kp
from pythia_data.kernels import cuda_pretokenize_split as ks

u8 = types.Array(types.uint8, 1, "C")
i32 = types.Array(types.int32, 1, "C")
i64 = types.Array(types.int64, 1, "C")
n = types.int64

SIGNATURES = [
    (kp.fill_kernel, (u8, n, types.uint8)),
    (kp.fill_kernel, (i32, n, types.int32)),
    (kp.doc_start_kernel, (i64, n, u8)),
    (kp.classify_kernel, (u8, n, i64, n, u8, u8, i32, i32, i32, i32, u8, u8)),
    (kp.wsrun_kernel, (u8, n, u8, u8, i32, n, u8, u8, i32)),
    (kp.boundary_kernel, (u8, n, u8, u8, u8, u8)),
    (ks.split_boundary_kernel, (u8, n, i64, n, u8, u8, u8, n, u8)),
    (kb.chunk_sum_kernel, (u8, n, n, i64)),
    (kb.chunk_sum_kernel, (i64, n, n, i64)),
    (kb.chunk_scan_kernel, (u8, i64, n, n, i64)),
    (kb.chunk_scan_kernel, (i64, i64, n, n, i64)),
    (kb.serial_scan_kernel, (u8, i64, n)),
    (kb.serial_scan_kernel, (i64, i64, n)),
    (kb.compact_kernel, (u8, i64, n, i64)),
    (kb.dedupe_kernel, (u8, n, u8, i64, i64, i32, i32)),
    (kb.bpe_kernel, (u8, n, u8, i64, i64, i32, i32, i64, i32, i32, i32, i32, i32, i32, n)),
    (kb.count_kernel, (n, i64, n, u8, i64, i64, i32, i32, n, u8, i64)),
    (kb.scatter_kernel, (u8, n, u8, i32, i64, i64, i32, i32, i32, i32, i64, i32)),
    (kb.doc_offsets_kernel, (i64, n, i64, i64, i64)),
]


def _without_a_device(cc):
    """Device functions are compiled for the current device's compute capability; with no
    device, pretend one (numba-cuda internals; only this check tool does this)."""
    try:
        from numba.cuda import dispatcher
    except ImportError:  # pragma: no cover - other numba-cuda layouts
        return

    class _Fake:
        compute_capability = cc

    dispatcher.get_current_device = lambda: _Fake()


def main(argv: list[str]) -> int:
    cc = tuple(int(x) for x in (argv[1] if len(argv) > 1 else "9.0").split("."))
    _without_a_device(cc)
    bad = 0
    for kernel, sig in SIGNATURES:
        name = kernel.py_func.__name__
        try:
            ptx, _ = compile_ptx(kernel.py_func, sig, cc=cc)
        except Exception as exc:  # noqa: BLE001 - report every failure
            bad += 1
            print(f"FAIL {name}{sig}: {type(exc).__name__}: {exc}")
            continue
        print(f"ok   {name}: {len(ptx)} bytes of PTX")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
