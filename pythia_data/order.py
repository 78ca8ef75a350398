"""The GPT-NeoX v1.0 training order: ``doc_idx``, ``sample_idx``, ``shuffle_idx``.

Built bit for bit as GPT-NeoX v1.0 builds them (DESIGN.md section 4, docs/order.md) and
cached under GPT-NeoX's own file names, so either tool reuses the other's cache::

    order = TrainingOrder.build("pile_deduped", OrderParams())   # Pythia's settings
    order.sample_positions(np.arange(1024))                       # iteration 0

Cache files (``PREFIX`` = the dataset prefix, or ``INDEX_DIR/basename(PREFIX)``)::

    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_doc_idx.npy      int32 (epochs x docs,)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_sample_idx.npy   int32 (samples + 1, 2)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_shuffle_idx.npy  uint32 (samples,)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_meta.json our fingerprint

A cache is used only after it is checked (see :func:`check_cache` and docs/order.md);
one that does not match raises :class:`CacheMismatchError`, it is never silently used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import xxhash

from pythia_data.errors import CacheMismatchError, InputError, OutputError, UsageError
from pythia_data.kernels import order as K
from pythia_data.neox_config import load_neox_config

__all__ = [
    "OrderParams",
    "TrainingOrder",
    "load_neox_config",
    "cache_paths",
    "check_cache",
    "verify_cache",
    "num_epochs_for",
]

META_FORMAT = "pythia-data/neox-indexmap"
META_VERSION = 1
MAX_EPOCHS = 65534
_ARRAYS = ("doc_idx", "sample_idx", "shuffle_idx")
_I32_MAX = np.iinfo(np.int32).max
# GPT-NeoX: `if size >= (np.iinfo(np.uint32).max - 1): dtype_ = np.int64`
_SHUFFLE_INT64_FROM = int(np.iinfo(np.uint32).max) - 1


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

    train_iters: int = 143000
    batch_size: int = 1024
    seq_length: int = 2048
    seed: int = 1234

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
        if values["train_iters"] is None:
            raise UsageError(f"{', '.join(cfg.sources)} has no train-iters; pass train_iters")
        if batch_size is None:
            batch_size = cfg.train_batch_size if cfg.train_batch_size is not None else 1024
        return cls(batch_size=batch_size, **values)

    def stem(self, prefix: str) -> str:
        """GPT-NeoX's cache-file stem for a dataset prefix."""
        return (
            f"{prefix}_train_0_indexmap_{self.num_samples}ns_{self.seq_length}sl_{self.seed}s"
        )


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


# --------------------------------------------------------------------------- inputs


def _resolve_sizes(source, prefix: str | None):
    """-> (sizes int32 1-D, prefix or None, dataset or None)."""
    ds = None
    if isinstance(source, np.ndarray):
        sizes = source
    elif isinstance(source, (str, os.PathLike)):
        sizes, found = _sizes_from_index(source)
        prefix = prefix or found
    elif hasattr(source, "sizes"):
        ds = source
        sizes = source.sizes
        prefix = prefix or getattr(source, "prefix", None)
    else:
        raise UsageError(f"expected a dataset, a path or a sizes array, not {type(source).__name__}")
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu":
        raise UsageError("sizes must be a 1-D integer array")
    if sizes.dtype != np.int32:
        if sizes.size and (sizes.min() < 0 or sizes.max() > _I32_MAX):
            raise InputError("document sizes must fit int32")
        sizes = sizes.astype(np.int32)
    if sizes.shape[0] == 0:
        raise InputError("the dataset has no documents")
    if sizes.shape[0] - 1 > _I32_MAX:
        raise InputError("more documents than int32 doc_idx can hold")
    return sizes, (os.fspath(prefix) if prefix is not None else None), ds


def _sizes_from_index(path) -> tuple[np.ndarray, str]:
    """The sizes array of a dataset, read from its ``.idx`` alone (the order needs nothing
    else, so the ``.bin`` or its shards need not be there yet)."""
    from pythia_data.indexed import read_index_header, resolve_prefix, strip_suffix

    text = os.fspath(path)
    prefix = strip_suffix(text)
    if os.path.isdir(text) or not os.path.isfile(prefix + ".idx"):
        prefix = resolve_prefix(text)[0]  # folders, shard names; raises a clear error
    header = read_index_header(prefix + ".idx")
    if header.num_sequences == 0:
        raise InputError(f"{prefix}.idx holds no sequences")
    sizes = np.memmap(prefix + ".idx", dtype="<i4", mode="r", offset=header.sizes_offset,
                      shape=(header.num_sequences,))
    return sizes, prefix


def _sizes_digest(sizes: np.ndarray) -> str:
    return xxhash.xxh3_128_hexdigest(memoryview(np.ascontiguousarray(sizes, dtype="<i4")).cast("B"))


def _array_digest(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    h = xxhash.xxh3_128()
    flat = arr.reshape(-1)
    step = 1 << 26
    for lo in range(0, flat.shape[0], step):
        h.update(memoryview(flat[lo : lo + step]).cast("B"))
    return h.hexdigest()


def cache_paths(prefix: str, params: OrderParams, index_dir=None) -> dict:
    """GPT-NeoX's cache file names (plus our ``meta`` sidecar) for a dataset prefix."""
    prefix = os.fspath(prefix)
    if index_dir is not None:
        prefix = os.path.join(os.fspath(index_dir), os.path.basename(prefix))
    stem = params.stem(prefix)
    out = {name: stem + f"_{name}.npy" for name in _ARRAYS}
    out["meta"] = stem + "_pythia_meta.json"
    return out


# --------------------------------------------------------------------------- building


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", unit_scale=True, leave=False)


def _shuffle(rng: K.MT19937, data: np.ndarray, progress: bool, desc: str) -> None:
    bar = _progress_bar(progress, data.shape[0], desc)
    try:
        rng.shuffle(data, callback=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()


def _plan(sizes: np.ndarray, num_samples: int, seq_length: int):
    """-> (num_epochs, tokens_per_epoch, total_samples), checked."""
    num_samples = _check_int("num_samples", num_samples, 1)
    seq_length = _check_int("seq_length", seq_length, 1, _I32_MAX - 1)
    tokens_per_epoch = int(sizes.sum(dtype=np.int64))
    num_epochs = num_epochs_for(tokens_per_epoch, seq_length, num_samples)
    if num_epochs > MAX_EPOCHS:
        raise UsageError(
            f"{num_epochs} epochs needed ({tokens_per_epoch} tokens per epoch): too few tokens "
            f"for {num_samples} samples"
        )
    return num_epochs, tokens_per_epoch, total_samples_for(tokens_per_epoch, seq_length,
                                                           num_epochs)


def build_index_mappings(sizes: np.ndarray, num_samples: int, seq_length: int, seed: int,
                         progress: bool = False):
    """GPT-NeoX's ``_build_index_mappings`` for one dataset, in memory.

    -> ``(doc_idx, sample_idx, shuffle_idx, num_epochs, tokens_per_epoch)``."""
    if not isinstance(sizes, np.ndarray) or sizes.ndim != 1 or sizes.dtype != np.int32:
        raise UsageError("sizes must be a 1-D int32 array")
    if sizes.shape[0] == 0:
        raise InputError("the dataset has no documents")
    if sizes.min() < 0:
        raise InputError(f"document {int(np.argmin(sizes))} has a negative size")
    num_epochs, tokens_per_epoch, total = _plan(sizes, num_samples, seq_length)
    rng = K.MT19937(seed)
    doc_idx = K.epoch_doc_list(sizes.shape[0], num_epochs, np.int32)
    _shuffle(rng, doc_idx, progress, "doc_idx")
    sample_idx = K.build_sample_idx(sizes, doc_idx, seq_length, total,
                                    sample_dtype(doc_idx.shape[0]))
    shuffle_idx = np.arange(total, dtype=shuffle_dtype(total))
    _shuffle(rng, shuffle_idx, progress, "shuffle_idx")
    return doc_idx, sample_idx, shuffle_idx, num_epochs, tokens_per_epoch


def build_arrays(sizes: np.ndarray, params: OrderParams, progress: bool = False):
    """:func:`build_index_mappings` with ``params`` (num_samples from the 1.005 rule)."""
    return build_index_mappings(sizes, params.num_samples, params.seq_length, params.seed,
                                progress)


def _check_folder(paths: dict) -> None:
    folder = os.path.dirname(paths["meta"]) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"index folder {folder} does not exist")


def _write_partial(path: str, chunks, dtype, shape, partials: list) -> str:
    """Write ``chunks`` (arrays whose bytes, in order, make an array of ``shape``) as a
    .npy file ``path + '.partial'``; -> xxh3-128 of the data bytes."""
    tmp = path + ".partial"
    partials.append(tmp)
    h = xxhash.xxh3_128()
    written = 0
    try:
        with open(tmp, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                      "fortran_order": False, "shape": tuple(int(x) for x in shape)}
            np.lib.format.write_array_header_1_0(f, header)
            for chunk in chunks:
                flat = np.ascontiguousarray(chunk).reshape(-1)
                step = 1 << 24
                for lo in range(0, flat.shape[0], step):
                    view = memoryview(flat[lo : lo + step]).cast("B")
                    h.update(view)
                    f.write(view)
                    written += view.nbytes
    except OSError as exc:
        raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from None
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if written != want:
        raise OutputError(f"{tmp}: wrote {written} bytes, expected {want}")
    return h.hexdigest()


def _commit(paths, partials, params, sizes, tokens, epochs, total, digests) -> None:
    """Rename the finished .partial files into place, then write the sidecar."""
    try:
        for name in _ARRAYS:
            os.replace(paths[name] + ".partial", paths[name])
    except OSError as exc:
        raise OutputError(f"cannot rename cache files: {exc.strerror or exc}") from None
    meta = _meta(params, _sizes_digest(sizes), sizes.shape[0], tokens, epochs, total, digests)
    _write_text(paths["meta"], json.dumps(meta, indent=1) + "\n")


def _write_text(path: str, text: str) -> None:
    tmp = path + ".partial"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _meta(params, sizes_digest, n_docs, tokens_per_epoch, num_epochs, total, digests) -> dict:
    return {
        "format": META_FORMAT,
        "version": META_VERSION,
        "params": asdict(params),
        "num_samples": params.num_samples,
        "num_docs": int(n_docs),
        "tokens_per_epoch": int(tokens_per_epoch),
        "sizes_xxh3_128": sizes_digest,
        "num_epochs": int(num_epochs),
        "total_samples": int(total),
        "arrays": digests,
    }


def _describe(arr: np.ndarray, digest: str | None) -> dict:
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "xxh3_128": digest}


# --------------------------------------------------------------------------- checking


@dataclass
class _Expect:
    n_docs: int
    tokens_per_epoch: int
    num_epochs: int
    total_samples: int
    sizes_digest: str
    params: OrderParams

    @property
    def shapes(self) -> dict:
        return {
            "doc_idx": (self.n_docs * self.num_epochs,),
            "sample_idx": (self.total_samples + 1, 2),
            "shuffle_idx": (self.total_samples,),
        }

    @property
    def dtypes(self) -> dict:
        return {
            "doc_idx": (np.dtype("<i4"),),
            # GPT-NeoX v1.0 writes int32; later GPT-NeoX writes int64 for big arrays.
            "sample_idx": (np.dtype("<i4"), np.dtype("<i8")),
            "shuffle_idx": (shuffle_dtype(self.total_samples).newbyteorder("<"),),
        }


def _expectations(sizes: np.ndarray, params: OrderParams) -> _Expect:
    tokens = int(sizes.sum(dtype=np.int64))
    epochs = num_epochs_for(tokens, params.seq_length, params.num_samples)
    return _Expect(
        n_docs=int(sizes.shape[0]),
        tokens_per_epoch=tokens,
        num_epochs=epochs,
        total_samples=total_samples_for(tokens, params.seq_length, epochs),
        sizes_digest=_sizes_digest(sizes),
        params=params,
    )


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CacheMismatchError(f"{path}: not a readable .npy file ({exc})") from None


def _check_layout(paths: dict, expect: _Expect) -> dict:
    arrays = {}
    for name in _ARRAYS:
        arr = _load_npy(paths[name])
        if arr.dtype not in expect.dtypes[name]:
            want = " or ".join(d.name for d in expect.dtypes[name])
            raise CacheMismatchError(f"{paths[name]}: dtype {arr.dtype}, expected {want}")
        if arr.shape != expect.shapes[name]:
            raise CacheMismatchError(
                f"{paths[name]}: shape {arr.shape}, expected {expect.shapes[name]}"
            )
        arrays[name] = arr
    return arrays


def _read_meta(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CacheMismatchError(f"{path}: unreadable sidecar ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise CacheMismatchError(f"{path}: not a pythia-data index-map sidecar")
    return meta


def _check_meta(meta: dict, path: str, expect: _Expect) -> None:
    if meta.get("version") != META_VERSION:
        raise CacheMismatchError(f"{path}: sidecar version {meta.get('version')} unsupported")
    want = {
        "params": asdict(expect.params),
        "num_docs": expect.n_docs,
        "tokens_per_epoch": expect.tokens_per_epoch,
        "sizes_xxh3_128": expect.sizes_digest,
        "num_epochs": expect.num_epochs,
        "total_samples": expect.total_samples,
    }
    for key, value in want.items():
        if meta.get(key) != value:
            what = "document sizes" if key == "sizes_xxh3_128" else key
            raise CacheMismatchError(
                f"{path}: made for other inputs ({what}: {meta.get(key)!r}, now {value!r})"
            )


def _file_digest(path: str, offset: int, nbytes: int) -> str:
    """xxh3-128 of ``nbytes`` bytes of a file from ``offset``, read in blocks (no mmap, so
    the pages do not count in this process's memory)."""
    h = xxhash.xxh3_128()
    buf = bytearray(1 << 24)
    view = memoryview(buf)
    left = nbytes
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        while left > 0:
            got = f.readinto(view[: min(len(buf), left)])
            if not got:
                break
            h.update(view[:got])
            left -= got
    return h.hexdigest()


def _check_digests(meta: dict, arrays: dict, paths: dict) -> None:
    described = meta.get("arrays") or {}
    for name in _ARRAYS:
        info = described.get(name) or {}
        arr = arrays[name]
        if isinstance(arr, np.memmap):
            digest = _file_digest(paths[name], arr.offset, arr.nbytes)
        else:
            digest = _array_digest(arr)
        if info.get("xxh3_128") != digest:
            raise CacheMismatchError(f"{paths[name]}: contents differ from when it was written")


def _check_structure(arrays: dict, sizes: np.ndarray, expect: _Expect, paths: dict) -> None:
    """Checks for a cache without our sidecar (e.g. written by GPT-NeoX)."""
    doc_idx, sample_idx, shuffle_idx = (arrays[n] for n in _ARRAYS)
    bad = K.first_bad_multiplicity(doc_idx, expect.n_docs, expect.num_epochs)
    if bad >= 0:
        where = (
            f"doc_idx[{bad}]"
            if bad < doc_idx.shape[0]
            else f"document {bad - doc_idx.shape[0]}"
        )
        raise CacheMismatchError(
            f"{paths['doc_idx']}: not every document {expect.num_epochs} time(s) (at {where})"
        )
    row = K.first_walk_mismatch(sizes, doc_idx, expect.params.seq_length, sample_idx)
    if row >= 0:
        raise CacheMismatchError(
            f"{paths['sample_idx']}: row {row} differs from the sample walk over doc_idx"
        )
    bad = K.first_not_permutation(shuffle_idx)
    if bad >= 0:
        raise CacheMismatchError(
            f"{paths['shuffle_idx']}: not a permutation of 0..{expect.total_samples - 1} "
            f"(at index {bad})"
        )


def check_cache(paths: dict, sizes: np.ndarray, params: OrderParams, expect=None) -> dict:
    """Open and check an existing cache -> {name: read-only memmap}.

    With our sidecar: inputs fingerprint, shapes, dtypes and xxh3-128 of every array.
    Without (a GPT-NeoX cache): shapes, dtypes, every document exactly ``num_epochs``
    times in ``doc_idx``, ``sample_idx`` equal to the sample walk over that ``doc_idx``,
    ``shuffle_idx`` a permutation. Raises :class:`CacheMismatchError` otherwise."""
    expect = expect or _expectations(sizes, params)
    meta = _read_meta(paths["meta"])
    if meta is not None:
        _check_meta(meta, paths["meta"], expect)
    arrays = _check_layout(paths, expect)
    if meta is not None:
        _check_digests(meta, arrays, paths)
    else:
        _check_structure(arrays, sizes, expect, paths)
    return arrays


# --------------------------------------------------------------------------- the order


class TrainingOrder:
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

    # -- construction
    @classmethod
    def build(cls, source, params: OrderParams | None = None, index_dir=None,
              use_cache: bool = True, write_cache: bool = True, progress: bool = False,
              prefix=None) -> TrainingOrder:
        """The order for ``source`` (an IndexedDataset, a dataset path/prefix, or a sizes
        array). Loads a checked cache when present (``use_cache``), else builds and, with
        ``write_cache``, writes one. A sizes array has no prefix: pass ``prefix`` (or
        ``index_dir``) to cache it."""
        params = params or OrderParams()
        sizes, prefix, ds = _resolve_sizes(source, prefix)
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
        paths = cache_paths(prefix, params, index_dir) if prefix is not None else {}
        if paths and use_cache and all(os.path.isfile(paths[n]) for n in _ARRAYS):
            expect = _expectations(sizes, params)
            arrays = check_cache(paths, sizes, params, expect)
            origin = "cache" if os.path.isfile(paths["meta"]) else "neox-cache"
            return cls(sizes, params, *(arrays[n] for n in _ARRAYS), expect.num_epochs,
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
        _check_folder(paths)
        _unlink(paths["meta"])
        epochs, tokens, total = _plan(sizes, params.num_samples, params.seq_length)
        rng = K.MT19937(params.seed)
        partials = []
        try:
            digests = {}
            doc_idx = K.epoch_doc_list(sizes.shape[0], epochs, np.int32)
            _shuffle(rng, doc_idx, progress, "doc_idx")
            digests["doc_idx"] = _describe(doc_idx, _write_partial(
                paths["doc_idx"], [doc_idx], doc_idx.dtype, doc_idx.shape, partials))
            s_dtype = sample_dtype(doc_idx.shape[0])
            chunks = K.iter_sample_idx(sizes, doc_idx, params.seq_length, total, s_dtype)
            digest = _write_partial(paths["sample_idx"], chunks, s_dtype, (total + 1, 2), partials)
            digests["sample_idx"] = {"dtype": s_dtype.str, "shape": [total + 1, 2],
                                     "xxh3_128": digest}
            del doc_idx, chunks
            shuffle_idx = np.arange(total, dtype=shuffle_dtype(total))
            _shuffle(rng, shuffle_idx, progress, "shuffle_idx")
            digests["shuffle_idx"] = _describe(shuffle_idx, _write_partial(
                paths["shuffle_idx"], [shuffle_idx], shuffle_idx.dtype, shuffle_idx.shape,
                partials))
            del shuffle_idx
            _commit(paths, partials, params, sizes, tokens, epochs, total, digests)
        except BaseException:
            for p in partials:
                _unlink(p)
            raise
        arrays = [np.load(paths[n], mmap_mode="r") for n in _ARRAYS]
        return cls(sizes, params, *arrays, epochs, tokens, paths, "built")

    def _write(self, paths: dict) -> None:
        """Write the in-memory arrays as a cache (then hold the files, not heap copies)."""
        _check_folder(paths)
        _unlink(paths["meta"])  # a stale sidecar must not vouch for new arrays
        partials = []
        try:
            digests = {}
            for name in _ARRAYS:
                arr = getattr(self, name)
                digests[name] = _describe(arr, _write_partial(paths[name], [arr], arr.dtype,
                                                              arr.shape, partials))
            _commit(paths, partials, self.params, self.sizes, self.tokens_per_epoch,
                    self.num_epochs, self.total_samples, digests)
        except BaseException:
            for p in partials:
                _unlink(p)
            raise
        for name in _ARRAYS:
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
            "dtypes": {n: getattr(self, n).dtype.name for n in _ARRAYS},
            "source": self.source,
            "files": {k: v for k, v in self.cache_paths.items()},
        }

    # -- batches
    def attach(self, dataset) -> TrainingOrder:
        """Read batches from ``dataset`` (an IndexedDataset or a path); returns self."""
        if isinstance(dataset, (str, os.PathLike)):
            from pythia_data.indexed import IndexedDataset

            dataset = IndexedDataset(dataset)
        self.dataset = dataset
        self._reader = None
        return self

    def reader(self, **kwargs):
        """A :class:`pythia_data.batches.BatchReader` over this order (``window``, ``rank``,
        ``world_size`` ... as keyword arguments)."""
        from pythia_data.batches import BatchReader

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


# --------------------------------------------------------------------------- verify


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """First flat index where a and b differ (chunked), None if equal."""
    fa = a.reshape(-1)
    fb = b.reshape(-1)
    step = 1 << 24
    for lo in range(0, fa.shape[0], step):
        diff = np.flatnonzero(np.asarray(fa[lo : lo + step]) != np.asarray(fb[lo : lo + step]))
        if diff.size:
            return lo + int(diff[0])
    return None


def verify_cache(source, params: OrderParams | None = None, index_dir=None, prefix=None,
                 progress: bool = False) -> dict:
    """Compare existing cache files with a fresh build (in memory; nothing is written).

    Returns a report: ``ok`` and, per array, ``path``, ``exists``, ``dtype``, ``shape``,
    ``ok`` and ``first_difference`` (a flat index for sample_idx: row = index // 2);
    ``shuffle_idx`` also gets ``is_permutation`` (and ``first_not_permutation``)."""
    params = params or OrderParams()
    sizes, prefix, _ds = _resolve_sizes(source, prefix)
    if prefix is None:
        if index_dir is None:
            raise UsageError("verify needs a dataset prefix or an index folder")
        prefix = "dataset"
    paths = cache_paths(prefix, params, index_dir)
    doc_idx, sample_idx, shuffle_idx, epochs, tokens = build_arrays(sizes, params, progress)
    fresh = {"doc_idx": doc_idx, "sample_idx": sample_idx, "shuffle_idx": shuffle_idx}
    report = {"ok": True, "num_epochs": epochs, "total_samples": int(shuffle_idx.shape[0]),
              "arrays": {}}
    for name in _ARRAYS:
        entry = {"path": paths[name], "exists": os.path.isfile(paths[name])}
        report["arrays"][name] = entry
        if not entry["exists"]:
            entry["ok"] = False
            report["ok"] = False
            continue
        try:
            arr = np.load(paths[name], mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            entry.update(ok=False, error=f"unreadable: {exc}")
            report["ok"] = False
            continue
        want = fresh[name]
        entry["dtype"] = arr.dtype.name
        entry["shape"] = list(arr.shape)
        dtype_ok = arr.dtype == want.dtype or (
            name == "sample_idx" and arr.dtype == np.dtype("<i8")
        )
        entry["dtype_ok"] = bool(dtype_ok)
        if arr.shape != want.shape:
            entry["shape_ok"] = False
            n = min(arr.size, want.size)
            first = _first_difference(arr.reshape(-1)[:n], want.reshape(-1)[:n])
            entry["first_difference"] = n if first is None else first
        else:
            entry["shape_ok"] = True
            entry["first_difference"] = _first_difference(arr, want)
        if name == "shuffle_idx" and arr.ndim == 1:
            bad = K.first_not_permutation(np.ascontiguousarray(arr))
            entry["is_permutation"] = bad < 0
            entry["first_not_permutation"] = None if bad < 0 else bad
        entry["ok"] = bool(dtype_ok and entry["shape_ok"] and entry["first_difference"] is None)
        report["ok"] = report["ok"] and entry["ok"]
    meta_path = paths["meta"]
    report["sidecar"] = meta_path if os.path.isfile(meta_path) else None
    return report
