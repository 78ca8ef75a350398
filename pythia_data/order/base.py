"""What every order kind provides to the batch reader (see :mod:`.registry`).

An order kind maps *sample ids* (positions in the training order, ``0 .. num_samples-1``)
to spans of a dataset's logical token stream. Everything else — iterations, data-parallel
ranks, windows, chunking, output formats — is shared and lives in the reader and sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pythia_data.errors import UsageError

__all__ = ["BuildReport", "Order", "as_int"]


def as_int(name: str, value) -> int:
    """``value`` as an int (UsageError for bools, floats, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class BuildReport:
    """How an order came to be, for the caller to show: ``source`` is ``"built"``,
    ``"cache"`` (a checked pythia-data cache), ``"neox-cache"`` (a checked GPT-NeoX cache),
    ``"memory"`` (arrays given directly) or ``"dataset"`` (nothing to build: the
    preshuffled kind); ``cache_paths`` the cache files by name; ``notes`` what a user should
    be told (e.g. that the cache went to the per-user folder because the data's folder is
    read-only) -- shown on stderr by the CLI, unless ``-q``."""

    source: str = "memory"
    cache_paths: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Order:
    """Base class of order kinds. Subclasses set ``kind`` and ``params`` (an
    :class:`~pythia_data.order.params.OrderParams`: batch size, sequence length, iterations)
    and implement the three methods below."""

    kind: str = "?"
    params = None
    #: True when sample ``s`` is sequence ``s`` of the dataset (consecutive samples can be
    #: read as one contiguous byte range: zero-copy outputs).
    samples_are_sequences: bool = False
    #: True when ``params.train_iters`` caps the iterations a reader serves; False when
    #: every whole batch of the dataset is served (a preshuffled dataset read as it is).
    cap_iterations: bool = True
    #: How the order was made (see :class:`BuildReport`).
    report: BuildReport = BuildReport()

    def check_dataset(self, ds) -> None:
        """Raise FormatError when ``ds`` cannot be read with this order."""

    def num_samples(self, ds) -> int:
        """Samples available in the order over ``ds``."""
        raise NotImplementedError

    def sample_spans(self, ds, samples: np.ndarray, window_start: int, window_length: int):
        """``(starts, lengths)``: int64 token spans of the logical token stream of ``ds``
        that, read in order, give tokens ``[window_start, window_start + window_length)``
        of each sample in ``samples`` (int64, already range-checked)."""
        raise NotImplementedError
