"""The registry of order kinds, and the one place that turns user options into an order.

Adding an order kind is one module with a subclass of :class:`~pythia_data.order.base.Order`
plus one entry in :data:`ORDER_KINDS` (a builder ``(ds, params, index_dir, progress) ->
Order``); the CLI's ``--order`` choices, ``auto`` detection and the invariant test suite
(tests/test_order_invariants.py) pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable

from pythia_data.errors import UsageError
from pythia_data.order.base import Order
from pythia_data.order.neox_config import load_neox_config
from pythia_data.order.params import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH, OrderParams
from pythia_data.order.preshuffled import PreshuffledOrder, is_preshuffled
from pythia_data.order.training import TrainingOrder

__all__ = ["ORDER_KINDS", "detect_order", "order_params", "resolve_order"]


def _neox(ds, params: OrderParams, index_dir=None, progress=None) -> Order:
    return TrainingOrder.build(ds, params, index_dir=index_dir, progress=progress)


def _preshuffled(ds, params: OrderParams, index_dir=None, progress=None) -> Order:
    return PreshuffledOrder(params)


#: name -> builder(ds, params, index_dir, progress) -> Order
ORDER_KINDS: dict[str, Callable[..., Order]] = {
    "neox": _neox,
    "preshuffled": _preshuffled,
}


def detect_order(ds, seq_length: int) -> str:
    """``"preshuffled"`` if every sequence has ``seq_length + 1`` tokens, else ``"neox"``."""
    return "preshuffled" if is_preshuffled(ds, seq_length) else "neox"


def order_params(train_iters=None, batch_size=None, seq_length=None, seed=None,
                 configs=()) -> OrderParams:
    """:class:`OrderParams` from options and GPT-NeoX config files: an option given wins
    over the files, which win over Pythia's defaults."""
    overrides = {"train_iters": train_iters, "seq_length": seq_length, "seed": seed}
    if configs:
        return OrderParams.from_config(list(configs), batch_size=batch_size, **overrides)
    values = dict(overrides, batch_size=batch_size)
    return OrderParams(**{k: v for k, v in values.items() if v is not None})


def resolve_order(ds, kind: str = "auto", params: OrderParams | None = None, *,
                  index_dir=None, progress=None, explicit_train_iters: bool = True) -> Order:
    """The order of kind ``kind`` (``auto``: preshuffled when every sequence of ``ds`` has
    ``seq_length + 1`` tokens, else neox) over dataset ``ds``."""
    params = params or OrderParams()
    if kind == "auto":
        kind = detect_order(ds, params.seq_length)
    builder = ORDER_KINDS.get(kind)
    if builder is None:
        raise UsageError(f"unknown order {kind!r} (one of auto, {', '.join(ORDER_KINDS)})")
    return builder(ds, params, index_dir=index_dir, progress=progress)


def config_defaults(configs) -> tuple[int, int]:
    """(batch size, sequence length) from GPT-NeoX configs, else Pythia's."""
    cfg = load_neox_config(list(configs)) if configs else None
    seq = cfg.seq_length if cfg is not None and cfg.seq_length is not None else PYTHIA_SEQ_LENGTH
    batch = (getattr(cfg, "train_batch_size", None) if cfg is not None else None)
    return batch or PYTHIA_BATCH_SIZE, seq
