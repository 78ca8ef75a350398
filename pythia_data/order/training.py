"""The GPT-NeoX v1.0 training order of one dataset: :class:`TrainingOrder`.

Built bit for bit as GPT-NeoX v1.0 builds it (docs/order.md) and cached under GPT-NeoX's
own file names, so either tool reuses the other's cache::

    order = TrainingOrder.build("pile_deduped", OrderParams())   # Pythia's settings
    order[0]                                                     # iteration 0's batch
"""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from pythia_data.dataset.reader import IndexedDataset
from pythia_data.errors import CacheMismatchError, UsageError
from pythia_data.kernels import order as K
from pythia_data.order import cache as C
from pythia_data.order.base import BuildReport
from pythia_data.order.mappings import IndexMappings
from pythia_data.order.neox_v1 import build_arrays, plan, sample_dtype, shuffle, shuffle_dtype
from pythia_data.order.params import OrderParams
from pythia_data.order.reader import BatchReader


class TrainingOrder(IndexMappings):
    """GPT-NeoX v1.0's index mappings for one dataset and one set of :class:`OrderParams`."""


    def __init__(self, sizes, params, doc_idx, sample_idx, shuffle_idx, num_epochs,
                 tokens_per_epoch, cache_paths=None, source="memory"):
        self.sizes = sizes
        self.params = params
        self.doc_idx = doc_idx
        self.sample_idx = sample_idx
        self.shuffle_idx = shuffle_idx
        self.num_epochs = int(num_epochs)
        self.tokens_per_epoch = int(tokens_per_epoch)
        self.cache_paths = dict(cache_paths or {})
        self.source = source  # "built", "cache", "neox-cache" or "memory"
        self.dataset = None  # the IndexedDataset batches are read from (see attach)
        self._data_path = None
        self._reader = None
        self.notes: tuple[str, ...] = ()  # e.g. where the cache went (read-only data)

    # -- construction
    @classmethod
    def build(cls, source, params: OrderParams | None = None, index_dir=None,
              use_cache: bool = True, write_cache: bool = True, progress=None,
              prefix=None) -> TrainingOrder:
        """The order for ``source`` (an IndexedDataset, a dataset path/prefix, or a sizes
        array). Loads a checked cache when present (``use_cache``), else builds and, with
        ``write_cache``, writes one. A sizes array has no prefix: pass ``prefix`` (or
        ``index_dir``) to cache it."""
        params = params or OrderParams()
        sizes, prefix, ds = C.resolve_sizes(source, prefix)
        order = cls._build(sizes, prefix, params, index_dir, use_cache, write_cache, progress)
        order.dataset = ds
        if ds is None and isinstance(source, (str, os.PathLike)):
            order._data_path = os.fspath(source)
        return order

    @classmethod
    def _build(cls, sizes, prefix, params, index_dir, use_cache, write_cache,
               progress) -> TrainingOrder:
        if prefix is None and index_dir is not None:
            prefix = "dataset"
        paths = C.cache_paths(prefix, params, index_dir) if prefix is not None else {}
        note = None
        if paths and index_dir is None and not cls._complete(paths):
            # Read-only data: use (or write) the cache in the per-user folder instead.
            fallback = C.cache_paths(prefix, params, C.user_cache_folder(prefix))
            folder = os.path.dirname(paths["meta"]) or "."
            if cls._complete(fallback) or (write_cache and not C.folder_writable(folder)):
                note = (f"{folder} is not writable: the index cache is in "
                        f"{os.path.dirname(fallback['meta'])}")
                paths = fallback
        order = cls._build_paths(sizes, prefix, params, paths, use_cache, write_cache, progress)
        order.notes = (note,) if note else ()
        return order

    @property
    def report(self) -> BuildReport:
        """How this order was made: built, or loaded from a checked cache (and where)."""
        return BuildReport(self.source, dict(self.cache_paths), self.notes)

    @staticmethod
    def _complete(paths: dict) -> bool:
        return all(os.path.isfile(paths[n]) for n in C.ARRAYS)

    @classmethod
    def _build_paths(cls, sizes, prefix, params, paths, use_cache, write_cache,
                     progress) -> TrainingOrder:
        if paths and use_cache and cls._complete(paths):
            expect = C.expectations(sizes, params)
            try:
                arrays = C.check_cache(paths, sizes, params, expect)
            except CacheMismatchError as exc:
                folder = os.path.dirname(paths["meta"]) or "."
                raise CacheMismatchError(
                    f"{exc} -- the cache in {folder} does not fit: rebuild it with "
                    "'pythia-data order build DATA --force' (same order options) or remove "
                    "its files") from None
            origin = "cache" if os.path.isfile(paths["meta"]) else "neox-cache"
            return cls(sizes, params, *(arrays[n] for n in C.ARRAYS), expect.num_epochs,
                       expect.tokens_per_epoch, paths, origin)
        if paths and write_cache:
            return cls._build_to_files(sizes, params, paths, progress)
        doc_idx, sample_idx, shuffle_idx, epochs, tokens = build_arrays(sizes, params, progress)
        return cls(sizes, params, doc_idx, sample_idx, shuffle_idx, epochs, tokens, paths,
                   "built")

    @classmethod
    def _build_to_files(cls, sizes, params, paths, progress) -> TrainingOrder:
        """Build straight into the cache files: sample_idx is streamed out as it is walked
        and doc_idx is freed before shuffle_idx is made, so at most the sizes plus one
        index array are in memory at a time. The files appear only when all are done."""
        epochs, tokens, total = plan(sizes, params.num_samples, params.seq_length)
        writer = C.CacheWriter(paths)
        rng = K.MT19937(params.seed)
        try:
            doc_idx = K.epoch_doc_list(sizes.shape[0], epochs, np.int32)
            shuffle(rng, doc_idx, progress, "doc_idx")
            writer.add("doc_idx", [doc_idx], doc_idx.dtype, doc_idx.shape)
            s_dtype = sample_dtype(doc_idx.shape[0])
            chunks = K.iter_sample_idx(sizes, doc_idx, params.seq_length, total, s_dtype)
            writer.add("sample_idx", chunks, s_dtype, (total + 1, 2))
            del doc_idx, chunks
            shuffle_idx = np.arange(total, dtype=shuffle_dtype(total))
            shuffle(rng, shuffle_idx, progress, "shuffle_idx")
            writer.add("shuffle_idx", [shuffle_idx], shuffle_idx.dtype, shuffle_idx.shape)
            del shuffle_idx
            writer.commit(C.make_meta(params, sizes, tokens, epochs, total))
        except BaseException:
            writer.abort()
            raise
        arrays = [np.load(paths[n], mmap_mode="r") for n in C.ARRAYS]
        return cls(sizes, params, *arrays, epochs, tokens, paths, "built")

    def _write(self, paths: dict) -> None:
        """Write the in-memory arrays as a cache (then hold the files, not heap copies)."""
        writer = C.CacheWriter(paths)
        try:
            for name in C.ARRAYS:
                arr = getattr(self, name)
                writer.add(name, [arr], arr.dtype, arr.shape)
            writer.commit(C.make_meta(self.params, self.sizes, self.tokens_per_epoch,
                                      self.num_epochs, self.total_samples))
        except BaseException:
            writer.abort()
            raise
        for name in C.ARRAYS:
            setattr(self, name, np.load(paths[name], mmap_mode="r"))

    # -- shape
    @property
    def total_samples(self) -> int:
        """Samples in the index (>= params.num_samples); the last ones are never trained."""
        return int(self.shuffle_idx.shape[0])

    @property
    def num_docs(self) -> int:
        return int(self.sizes.shape[0])

    def summary(self) -> dict:
        return {
            "params": asdict(self.params),
            "num_samples": self.params.num_samples,
            "num_docs": self.num_docs,
            "tokens_per_epoch": self.tokens_per_epoch,
            "num_epochs": self.num_epochs,
            "total_samples": self.total_samples,
            "dtypes": {n: getattr(self, n).dtype.name for n in C.ARRAYS},
            "source": self.source,
            "files": {k: v for k, v in self.cache_paths.items()},
        }

    # -- batches
    def attach(self, dataset) -> TrainingOrder:
        """Read batches from ``dataset`` (an IndexedDataset or a path); returns self."""
        if isinstance(dataset, (str, os.PathLike)):
            dataset = IndexedDataset(dataset)
        self.dataset = dataset
        self._reader = None
        return self

    def reader(self, **kwargs):
        """A :class:`pythia_data.order.reader.BatchReader` over this order (``window``, ``rank``,
        ``world_size`` ... as keyword arguments)."""
        if self.dataset is None:
            if self._data_path is None:
                raise UsageError("this order has no dataset to read batches from: "
                                 "call order.attach(dataset) first")
            self.attach(self._data_path)
        if kwargs:
            return BatchReader(self.dataset, self, **kwargs)
        if self._reader is None:
            self._reader = BatchReader(self.dataset, self)
        return self._reader

    @property
    def num_iterations(self) -> int:
        """Whole iterations the run trains on (``min(train_iters, samples // batch)``)."""
        return min(self.params.train_iters, self.total_samples // self.params.batch_size)

    def __getitem__(self, iteration: int):
        """The batch of iteration ``iteration``: a ``(batch_size, seq_length + 1)`` array
        of tokens, the same code path as :func:`pythia_data.batches.batches`."""
        return self.reader()[iteration]

    def batches(self, start: int = 0, end: int | None = None, **kwargs):
        """Yield one array per iteration ``start..end`` inclusive (default: to the last);
        ``kwargs`` as for :meth:`reader`."""
        reader = self.reader(**kwargs)
        if end is None:
            end = reader.num_iterations - 1
        return reader.iter_batches(start, end)

    # -- samples
    def sample_positions(self, sample_ids):
        """For training samples ``sample_ids`` (int64): ``(doc_pos_start, off_start,
        doc_pos_end, off_end)``, the ``sample_idx`` rows ``shuffle_idx[i]`` and
        ``shuffle_idx[i] + 1``. Tokens run from (doc_idx[pos_start], off_start) to
        (doc_idx[pos_end], off_end) inclusive: ``seq_length + 1`` of them."""
        ids = np.asarray(sample_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.total_samples):
            raise UsageError(f"sample ids must be in [0, {self.total_samples})")
        rows = np.asarray(self.shuffle_idx[ids], dtype=np.int64)
        start = np.asarray(self.sample_idx[rows], dtype=np.int64)
        end = np.asarray(self.sample_idx[rows + 1], dtype=np.int64)
        return start[..., 0], start[..., 1], end[..., 0], end[..., 1]

    # -- locate
    def locate(self, document: int) -> list[dict]:
        """Every place document ``document``'s tokens occur in the order, sorted by sample.

        Each dict: ``sample`` (position in the training order), ``iteration``,
        ``batch_position``, ``trained`` (iteration < train_iters), ``occurrence`` (which
        copy of the document, by position in doc_idx), ``doc_position``, ``sample_row``
        (row of sample_idx), ``sample_tokens`` [start, end) within the sample's
        seq_length + 1 tokens, ``doc_tokens`` [start, end) within the document."""
        document = int(document)
        if not 0 <= document < self.num_docs:
            raise UsageError(f"document {document} out of range (0..{self.num_docs - 1})")
        positions = K.positions_of(self.doc_idx, document, expected=self.num_epochs)
        found = []
        for occurrence, p in enumerate(positions):
            for j, in_sample, first, last in K.covering_samples(
                self.sample_idx, self.sizes, self.doc_idx, int(p)
            ):
                found.append((int(j), occurrence, int(p), int(in_sample), int(first), int(last)))
        if not found:
            return []
        rows = np.array([f[0] for f in found], dtype=np.int64)
        samples = K.inverse_lookup(self.shuffle_idx, rows)
        if (samples < 0).any():
            raise CacheMismatchError("shuffle_idx is not a permutation (a row has no sample)")
        batch = self.params.batch_size
        out = []
        for (j, occurrence, p, in_sample, first, last), i in zip(found, samples.tolist()):
            out.append({
                "sample": i,
                "iteration": i // batch,
                "batch_position": i % batch,
                "trained": i < self.params.train_samples,
                "occurrence": occurrence,
                "doc_position": p,
                "sample_row": j,
                "sample_tokens": [in_sample, in_sample + last - first + 1],
                "doc_tokens": [first, last + 1],
            })
        out.sort(key=lambda r: (r["sample"], r["sample_tokens"][0]))
        return out
