"""The preshuffled order: the dataset already is the training order (Pythia's
``pile-*-pythia-preshuffled`` files): sample ``s`` is sequence ``s``, every sequence has
``seq_length + 1`` tokens."""

from __future__ import annotations

import numpy as np

from pythia_data.errors import FormatError, UsageError
from pythia_data.order.base import BuildReport, Order
from pythia_data.order.params import OrderParams

__all__ = ["PreshuffledOrder", "is_preshuffled"]


def is_preshuffled(ds, seq_length: int, chunk: int = 1 << 24) -> bool:
    """True when every sequence of ``ds`` has ``seq_length + 1`` tokens (checked in chunks)."""
    sizes = ds.sizes
    if len(sizes) == 0:
        return False
    target = int(seq_length) + 1
    for lo in range(0, len(sizes), chunk):
        if not np.all(sizes[lo : lo + chunk] == target):
            return False
    return True


class PreshuffledOrder(Order):
    """Sample ``s`` = sequence ``s`` of the dataset. ``params`` supplies the batch size and
    sequence length (its ``train_iters`` caps the iterations when given)."""

    kind = "preshuffled"
    samples_are_sequences = True
    report = BuildReport(source="dataset")

    def __init__(self, params: OrderParams | None = None, *, cap_iterations: bool = False):
        self.params = params or OrderParams()
        self.cap_iterations = cap_iterations

    def num_samples(self, ds) -> int:
        return len(ds)

    def sample_spans(self, ds, samples, window_start, window_length):
        if samples.size and int(samples.max()) >= len(ds):
            raise UsageError(f"sample {int(samples.max())} is past the end of the dataset")
        self._check_sizes(ds, samples)
        starts = ds.pointers[samples] // ds.dtype.itemsize + window_start
        return starts, np.full(samples.shape[0], window_length, dtype=np.int64)

    def _check_sizes(self, ds, samples) -> None:
        """FormatError unless every sequence in ``samples`` has ``seq_length + 1`` tokens."""
        sample_len = self.params.seq_length + 1
        sizes = ds.sizes[samples]
        bad = np.flatnonzero(sizes != sample_len)
        if bad.size:
            s = int(samples[bad[0]])
            raise FormatError(
                f"sequence {s} has {int(sizes[bad[0]])} tokens, not seq_length + 1 = "
                f"{sample_len}: not a preshuffled dataset for this sequence length "
                "(use the neox order)"
            )

    def locate(self, ds, document: int) -> list[dict]:
        """Where sequence ``document`` is trained on: sample ``document`` (row ``document`` of
        what ``batches`` writes), in the same form as :meth:`TrainingOrder.locate`."""
        document = int(document)
        n = len(ds.sizes)
        if not 0 <= document < n:
            raise UsageError(f"document {document} out of range (0..{n - 1})")
        size = int(ds.sizes[document])
        batch = self.params.batch_size
        # the same check 'batches' makes on the iteration holding this sample
        first = document // batch * batch
        self._check_sizes(ds, np.arange(first, min(first + batch, n), dtype=np.int64))
        return [{
            "sample": document,
            "iteration": document // batch,
            "batch_position": document % batch,
            "trained": document < self.params.train_samples,
            "occurrence": 0,
            "doc_position": document,
            "sample_row": document,
            "sample_tokens": [0, size],
            "doc_tokens": [0, size],
        }]
