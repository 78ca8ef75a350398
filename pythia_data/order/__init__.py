"""The order layer: training orders of every kind and the reader of their batches.

- :mod:`.defaults` — the one home of Pythia's defaults (no imports);
- :mod:`.params` — :class:`OrderParams`;
- :mod:`.neox_v1` — GPT-NeoX v1.0's index-mapping algorithm, bit for bit;
- :mod:`.cache` — GPT-NeoX's cache files (names, atomic writing, checking);
- :mod:`.training` — :class:`TrainingOrder` (the neox order kind) and ``locate``;
- :mod:`.preshuffled` — :class:`PreshuffledOrder` (the dataset already is the order);
- :mod:`.registry` — :data:`ORDER_KINDS`, ``auto`` detection, options -> order;
- :mod:`.reader` — :class:`BatchReader`: iterations -> samples -> token rows;
- :mod:`.verify` — compare existing cache files with a fresh build.
"""

import importlib

from pythia_data.order.defaults import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_SEED,
    PYTHIA_SEQ_LENGTH,
    PYTHIA_TRAIN_ITERS,
)

# Everything else is imported on first use (PEP 562), so that ``pythia_data.order.defaults``
# (Pythia's numbers, for --help texts) costs nothing: the algorithm modules load numba.
_LAZY = {
    "BatchReader": "pythia_data.order.reader",
    "BuildReport": "pythia_data.order.base",
    "Chunk": "pythia_data.order.reader",
    "ORDER_KINDS": "pythia_data.order.registry",
    "Order": "pythia_data.order.base",
    "OrderParams": "pythia_data.order.params",
    "PreshuffledOrder": "pythia_data.order.preshuffled",
    "TrainingOrder": "pythia_data.order.training",
    "Window": "pythia_data.order.reader",
    "build_index_mappings": "pythia_data.order.neox_v1",
    "cache_paths": "pythia_data.order.cache",
    "check_cache": "pythia_data.order.cache",
    "detect_order": "pythia_data.order.registry",
    "is_preshuffled": "pythia_data.order.preshuffled",
    "load_neox_config": "pythia_data.order.neox_config",
    "num_epochs_for": "pythia_data.order.neox_v1",
    "order_params": "pythia_data.order.registry",
    "resolve_order": "pythia_data.order.registry",
    "verify_cache": "pythia_data.order.verify",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pythia_data.order' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ORDER_KINDS",
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_SEED",
    "PYTHIA_SEQ_LENGTH",
    "PYTHIA_TRAIN_ITERS",
    "BatchReader",
    "BuildReport",
    "Chunk",
    "Order",
    "OrderParams",
    "PreshuffledOrder",
    "TrainingOrder",
    "Window",
    "build_index_mappings",
    "cache_paths",
    "check_cache",
    "detect_order",
    "is_preshuffled",
    "load_neox_config",
    "num_epochs_for",
    "order_params",
    "resolve_order",
    "verify_cache",
]
