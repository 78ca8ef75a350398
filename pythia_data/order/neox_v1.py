"""GPT-NeoX v1.0's index mappings, bit for bit: epochs, ``doc_idx``, ``sample_idx``,
``shuffle_idx`` (docs/order.md has every rule and the numbers for Pythia)."""

from __future__ import annotations

import numpy as np

from pythia_data.errors import InputError, UsageError
from pythia_data.kernels import order as K
from pythia_data.order.params import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_SEQ_LENGTH,
    PYTHIA_TRAIN_ITERS,
    OrderParams,
    _check_int,
)
from pythia_data.progress import ProgressFactory, task

MAX_EPOCHS = 65534
_I32_MAX = np.iinfo(np.int32).max
# GPT-NeoX: `if size >= (np.iinfo(np.uint32).max - 1): dtype_ = np.int64`
_SHUFFLE_INT64_FROM = int(np.iinfo(np.uint32).max) - 1


def num_epochs_for(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    """Smallest ``e >= 1`` with ``(e * tokens_per_epoch - 1) // seq_length >= num_samples``."""
    tokens_per_epoch = int(tokens_per_epoch)
    if tokens_per_epoch < 1:
        raise InputError("the dataset has no tokens")
    need = int(num_samples) * int(seq_length) + 1  # e * T - 1 >= ns * L
    return max(1, -(-need // tokens_per_epoch))


def total_samples_for(tokens_per_epoch: int, seq_length: int, num_epochs: int) -> int:
    return (int(num_epochs) * int(tokens_per_epoch) - 1) // int(seq_length)


def shuffle_dtype(total_samples: int) -> np.dtype:
    return np.dtype(np.int64 if total_samples >= _SHUFFLE_INT64_FROM else np.uint32)


def sample_dtype(doc_positions: int) -> np.dtype:
    """int32 as GPT-NeoX v1.0 writes; int64 only where a position would not fit int32
    (where GPT-NeoX v1.0's int32 would overflow)."""
    return np.dtype(np.int32 if doc_positions - 1 <= _I32_MAX else np.int64)


def shuffle(rng: K.MT19937, data: np.ndarray, progress: ProgressFactory | None,
            desc: str) -> None:
    """``rng.shuffle(data)`` (numpy's RandomState.shuffle, bit for bit), with progress."""
    with task(progress, desc, data.shape[0]) as update:
        rng.shuffle(data, callback=update)


def plan(sizes: np.ndarray, num_samples: int, seq_length: int):
    """-> (num_epochs, tokens_per_epoch, total_samples), checked."""
    num_samples = _check_int("num_samples", num_samples, 1)
    seq_length = _check_int("seq_length", seq_length, 1, _I32_MAX - 1)
    tokens_per_epoch = int(sizes.sum(dtype=np.int64))
    num_epochs = num_epochs_for(tokens_per_epoch, seq_length, num_samples)
    if num_epochs > MAX_EPOCHS:
        per_epoch = max(tokens_per_epoch - 1, 0) // seq_length
        raise UsageError(
            f"{num_epochs} epochs needed ({tokens_per_epoch} tokens per epoch): too few tokens "
            f"for {num_samples} samples; the order's size is set by --train-iters and "
            f"--batch-size (or a GPT-NeoX --config), default Pythia's {PYTHIA_TRAIN_ITERS} x "
            f"{PYTHIA_BATCH_SIZE} samples of --seq-length {PYTHIA_SEQ_LENGTH} tokens. One epoch of this dataset holds {per_epoch} "
            f"samples of {seq_length} tokens: e.g. --train-iters 10 --batch-size 8 "
            f"--seq-length 64 fits a small dataset"
        )
    return num_epochs, tokens_per_epoch, total_samples_for(tokens_per_epoch, seq_length,
                                                           num_epochs)


def build_index_mappings(sizes: np.ndarray, num_samples: int, seq_length: int, seed: int,
                         progress: ProgressFactory | None = None):
    """GPT-NeoX's ``_build_index_mappings`` for one dataset, in memory.

    -> ``(doc_idx, sample_idx, shuffle_idx, num_epochs, tokens_per_epoch)``."""
    if not isinstance(sizes, np.ndarray) or sizes.ndim != 1 or sizes.dtype != np.int32:
        raise UsageError("sizes must be a 1-D int32 array")
    if sizes.shape[0] == 0:
        raise InputError("the dataset has no documents")
    if sizes.min() < 0:
        raise InputError(f"document {int(np.argmin(sizes))} has a negative size")
    num_epochs, tokens_per_epoch, total = plan(sizes, num_samples, seq_length)
    rng = K.MT19937(seed)
    doc_idx = K.epoch_doc_list(sizes.shape[0], num_epochs, np.int32)
    shuffle(rng, doc_idx, progress, "doc_idx")
    sample_idx = K.build_sample_idx(sizes, doc_idx, seq_length, total,
                                    sample_dtype(doc_idx.shape[0]))
    shuffle_idx = np.arange(total, dtype=shuffle_dtype(total))
    shuffle(rng, shuffle_idx, progress, "shuffle_idx")
    return doc_idx, sample_idx, shuffle_idx, num_epochs, tokens_per_epoch


def build_arrays(sizes: np.ndarray, params: OrderParams, progress: ProgressFactory | None = None):
    """:func:`build_index_mappings` with ``params`` (num_samples from the 1.005 rule)."""
    return build_index_mappings(sizes, params.num_samples, params.seq_length, params.seed,
                                progress)
