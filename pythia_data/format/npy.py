"""``.npy`` headers: what ``np.save`` writes before the data of a C-order array."""

from __future__ import annotations

import io

import numpy as np


def npy_header(dtype, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for a C-order array of this dtype and shape
    (little-endian dtype)."""
    buf = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<")),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # header too long for format 1.0 (never for 2-D shapes)
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()
