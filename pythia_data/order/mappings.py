"""The neox order kind over any GPT-NeoX index mappings (``doc_idx``, ``sample_idx``,
``shuffle_idx``): built here, loaded from GPT-NeoX's cache, or held by any object that has
the three arrays and ``params`` (a test's reference implementation, say)."""

from __future__ import annotations

import numpy as np

from pythia_data.errors import FormatError, UsageError
from pythia_data.kernels.spans import sample_spans
from pythia_data.order.base import Order

__all__ = ["IndexMappings", "as_order"]


class IndexMappings(Order):
    """Sample ``i`` is row ``j = shuffle_idx[i]`` of ``sample_idx``: tokens from
    ``sample_idx[j]`` to ``sample_idx[j + 1]`` (end inclusive) over the documents
    ``doc_idx``. Subclasses set ``doc_idx``, ``sample_idx``, ``shuffle_idx``, ``params``
    and ``sizes`` (the document sizes the order was built for, or None)."""

    kind = "neox"
    sizes = None

    # -- the Order protocol (what the batch reader uses)
    def check_dataset(self, ds) -> None:
        if self.sizes is not None and len(self.sizes) != len(ds):
            raise FormatError(
                f"the training order was built for {len(self.sizes)} documents but the dataset "
                f"has {len(ds)} sequences"
            )
        if self.sample_idx.ndim != 2 or self.sample_idx.shape[1] != 2:
            raise FormatError(
                f"sample_idx must have shape (n + 1, 2), got {self.sample_idx.shape}")

    def num_samples(self, ds=None) -> int:
        return min(len(self.shuffle_idx), len(self.sample_idx) - 1)

    def sample_spans(self, ds, samples, window_start, window_length):
        j = np.asarray(self.shuffle_idx[samples], dtype=np.int64)
        n_rows = len(self.sample_idx)
        if j.size and (int(j.min()) < 0 or int(j.max()) + 1 >= n_rows):
            raise FormatError("shuffle_idx points outside sample_idx: the order is inconsistent")
        first = np.asarray(self.sample_idx[j])
        last = np.asarray(self.sample_idx[j + 1])
        return sample_spans(first[:, 0], first[:, 1], last[:, 0], last[:, 1], self.doc_idx,
                            ds.pointers, ds.sizes, self.params.seq_length + 1, window_start,
                            window_length, itemsize=ds.dtype.itemsize)


class _Wrapped(IndexMappings):
    def __init__(self, obj):
        for name in ("doc_idx", "sample_idx", "shuffle_idx"):
            if getattr(obj, name, None) is None:
                raise UsageError(f"the training order has no {name}")
            setattr(self, name, getattr(obj, name))
        self.params = getattr(obj, "params", None)
        self.sizes = getattr(obj, "sizes", None)
        if self.params is None:
            raise UsageError("the training order has no params (batch size, sequence length)")


def as_order(obj) -> Order:
    """``obj`` itself when it is an :class:`Order`, else the neox order over its arrays."""
    return obj if isinstance(obj, Order) else _Wrapped(obj)
