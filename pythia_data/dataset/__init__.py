"""The dataset layer: :class:`IndexedDataset` (read), :class:`DatasetBuilder` (write),
:func:`merge_datasets`, and where a dataset's files are (:func:`resolve_prefix`)."""

from pythia_data.dataset.builder import DatasetBuilder, merge_datasets, write_dataset
from pythia_data.dataset.paths import resolve_prefix
from pythia_data.dataset.reader import IndexedDataset
from pythia_data.format.mmidx import best_dtype, read_index_header, strip_suffix

__all__ = [
    "DatasetBuilder",
    "IndexedDataset",
    "best_dtype",
    "merge_datasets",
    "read_index_header",
    "resolve_prefix",
    "strip_suffix",
    "write_dataset",
]
