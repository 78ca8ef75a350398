"""The batches layer: the batches of iteration ranges written to any output format.

Iteration ``k`` of a run with global batch ``B`` is samples ``k*B .. (k+1)*B - 1`` of the
training order; the reading itself is :class:`~pythia_data.order.reader.BatchReader`
(re-exported here), the outputs are the sinks of :mod:`pythia_data.batches.sinks`.
"""

from pythia_data.batches.sinks import (
    FORMATS,
    SINKS,
    check_output,
    infer_format,
    known_suffixes,
    open_sink,
)
from pythia_data.batches.write import batches, iteration_batch, write_batches
from pythia_data.order.params import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH
from pythia_data.order.preshuffled import is_preshuffled
from pythia_data.order.reader import BatchReader, Chunk, Window
from pythia_data.order.registry import detect_order

__all__ = [
    "FORMATS",
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_SEQ_LENGTH",
    "SINKS",
    "BatchReader",
    "Chunk",
    "Window",
    "batches",
    "check_output",
    "detect_order",
    "infer_format",
    "is_preshuffled",
    "iteration_batch",
    "known_suffixes",
    "open_sink",
    "write_batches",
]
