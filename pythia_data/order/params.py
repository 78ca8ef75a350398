"""The parameters of a training order (defaults: Pythia's run, from :mod:`.defaults`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pythia_data.errors import UsageError
from pythia_data.order.defaults import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_SEED,
    PYTHIA_SEQ_LENGTH,
    PYTHIA_TRAIN_ITERS,
)
from pythia_data.order.neox_config import load_neox_config

_I32_MAX = np.iinfo(np.int32).max

__all__ = [
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_SEED",
    "PYTHIA_SEQ_LENGTH",
    "PYTHIA_TRAIN_ITERS",
    "OrderParams",
]


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        hi = f" and <= {maximum}" if maximum is not None else ""
        raise UsageError(f"{name} must be >= {minimum}{hi}, not {value}")
    return value


@dataclass(frozen=True)
class OrderParams:
    """What GPT-NeoX's order depends on besides the document sizes. Defaults: Pythia's."""

    train_iters: int = PYTHIA_TRAIN_ITERS
    batch_size: int = PYTHIA_BATCH_SIZE
    seq_length: int = PYTHIA_SEQ_LENGTH
    seed: int = PYTHIA_SEED

    def __post_init__(self):
        object.__setattr__(self, "train_iters", _check_int("train_iters", self.train_iters, 1))
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        object.__setattr__(
            self, "seq_length", _check_int("seq_length", self.seq_length, 1, _I32_MAX - 1)
        )
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0, 0xFFFFFFFF))

    @property
    def train_samples(self) -> int:
        """Samples actually trained on: ``train_iters * batch_size``."""
        return self.train_iters * self.batch_size

    @property
    def num_samples(self) -> int:
        """``ceil(train_iters * batch_size * 1.005)``: what GPT-NeoX asks the dataset for.

        Computed in floating point exactly as GPT-NeoX does (``math.ceil(n * weight *
        1.005)``, weight 1.0), since the cache names carry it. That equals the exact
        ``ceil(n * 1005 / 1000)`` for every n below 2**44 (~1.7e13 samples, see tests);
        above, the float rounding differs and GPT-NeoX's value is the one used."""
        return int(math.ceil(self.train_samples * 1.0 * 1.005))

    @classmethod
    def from_config(cls, path, batch_size: int | None = None, **overrides) -> OrderParams:
        """Params from GPT-NeoX config file(s); keyword ``overrides`` (``train_iters``,
        ``seq_length``, ``seed``) win over the file, ``None`` values are ignored.

        ``batch_size``: the global batch; None -> the file's ``train_batch_size`` if it
        has one, else 1024 (Pythia)."""
        cfg = load_neox_config(path)
        unknown = set(overrides) - {"train_iters", "seq_length", "seed"}
        if unknown:
            raise UsageError(f"unknown order parameter(s): {', '.join(sorted(unknown))}")
        values = {
            "train_iters": cfg.train_iters,
            "seq_length": cfg.seq_length,
            "seed": cfg.seed,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        # What the files leave unset falls back to Pythia's (GPT-NeoX v1.0 has no default
        # seq-length; its default seed is Pythia's 1234).
        if values["seq_length"] is None:
            values["seq_length"] = PYTHIA_SEQ_LENGTH
        if values["seed"] is None:
            values["seed"] = PYTHIA_SEED
        if values["train_iters"] is None:
            raise UsageError(f"{', '.join(cfg.sources)} has no train-iters; pass train_iters")
        if batch_size is None:
            batch_size = cfg.train_batch_size if cfg.train_batch_size is not None else PYTHIA_BATCH_SIZE
        return cls(batch_size=batch_size, **values)

    def stem(self, prefix: str) -> str:
        """GPT-NeoX's cache-file stem for a dataset prefix."""
        return (
            f"{prefix}_train_0_indexmap_{self.num_samples}ns_{self.seq_length}sl_{self.seed}s"
        )
