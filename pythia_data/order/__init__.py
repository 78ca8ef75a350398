"""The order layer: training orders of every kind and the reader of their batches.

- :mod:`.params` — :class:`OrderParams` and the one home of Pythia's defaults;
- :mod:`.neox_v1` — GPT-NeoX v1.0's index-mapping algorithm, bit for bit;
- :mod:`.cache` — GPT-NeoX's cache files (names, atomic writing, checking);
- :mod:`.training` — :class:`TrainingOrder` (the neox order kind) and ``locate``;
- :mod:`.preshuffled` — :class:`PreshuffledOrder` (the dataset already is the order);
- :mod:`.registry` — :data:`ORDER_KINDS`, ``auto`` detection, options -> order;
- :mod:`.reader` — :class:`BatchReader`: iterations -> samples -> token rows;
- :mod:`.verify` — compare existing cache files with a fresh build.
"""

from pythia_data.order.base import Order
from pythia_data.order.cache import cache_paths, check_cache
from pythia_data.order.neox_config import load_neox_config
from pythia_data.order.neox_v1 import build_index_mappings, num_epochs_for
from pythia_data.order.params import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_SEED,
    PYTHIA_SEQ_LENGTH,
    PYTHIA_TRAIN_ITERS,
    OrderParams,
)
from pythia_data.order.preshuffled import PreshuffledOrder, is_preshuffled
from pythia_data.order.reader import BatchReader, Chunk, Window
from pythia_data.order.registry import ORDER_KINDS, detect_order, order_params, resolve_order
from pythia_data.order.training import TrainingOrder
from pythia_data.order.verify import verify_cache

__all__ = [
    "ORDER_KINDS",
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_SEED",
    "PYTHIA_SEQ_LENGTH",
    "PYTHIA_TRAIN_ITERS",
    "BatchReader",
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
