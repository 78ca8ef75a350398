"""Numba kernels. Each module holds ``@njit(cache=True)`` functions plus thin typed wrappers
that validate shapes and dtypes before calling them."""
