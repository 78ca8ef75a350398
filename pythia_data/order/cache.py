"""GPT-NeoX's index-map cache files: names, writing (atomic, fsynced), checking.

Cache files (``PREFIX`` = the dataset prefix, or ``INDEX_DIR/basename(PREFIX)``)::

    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_doc_idx.npy      int32 (epochs x docs,)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_sample_idx.npy   int32 (samples + 1, 2)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_shuffle_idx.npy  uint32 (samples,)
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_meta.json our fingerprint

A cache is used only after it is checked (:func:`check_cache`, docs/order.md); one that does
not match raises :class:`CacheMismatchError`, it is never silently used.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
from dataclasses import asdict, dataclass

import numpy as np
import xxhash

from pythia_data.dataset.paths import resolve_prefix
from pythia_data.errors import CacheMismatchError, InputError, OutputError, UsageError
from pythia_data.format.header import read_index_header, strip_suffix
from pythia_data.format.npy import npy_header
from pythia_data.io.atomic import AtomicGroup, AtomicOutput, ensure_folder
from pythia_data.kernels import order as K
from pythia_data.order.neox_v1 import num_epochs_for, shuffle_dtype, total_samples_for
from pythia_data.order.params import OrderParams

META_FORMAT = "pythia-data/neox-indexmap"
META_VERSION = 1
ARRAYS = ("doc_idx", "sample_idx", "shuffle_idx")
_I32_MAX = np.iinfo(np.int32).max


def resolve_sizes(source, prefix: str | None):
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
    out = {name: stem + f"_{name}.npy" for name in ARRAYS}
    out["meta"] = stem + "_pythia_meta.json"
    return out


def user_cache_folder(prefix: str) -> str:
    """The per-user folder for the cache of a dataset whose own folder cannot be written:
    ``$PYTHIA_DATA_CACHE/index/<fingerprint>``, else
    ``~/.cache/pythia-data/index/<fingerprint>`` (the fingerprint: xxh3-64 of the dataset's
    absolute real path, so two datasets of the same name do not share a folder)."""
    base = os.environ.get("PYTHIA_DATA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "pythia-data")
    real = os.path.realpath(os.fspath(prefix))
    return os.path.join(base, "index", xxhash.xxh3_64_hexdigest(real.encode()))


def folder_writable(folder: str) -> bool:
    """Whether a file can be created in ``folder`` (or, when it does not exist, in its
    nearest existing parent). Probes by creating and removing a file, since ``os.access``
    says yes to root on a read-only file system."""
    folder = os.path.abspath(folder or ".")
    while not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    probe = os.path.join(folder, f".pythia-data-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False
        return True  # another problem: let the writer report it
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return True


def _write_npy(out: AtomicOutput, chunks, dtype, shape) -> str:
    """Write ``chunks`` (arrays whose bytes, in order, make an array of ``shape``) as a
    ``.npy`` into ``out``; -> xxh3-128 of the data bytes."""
    h = xxhash.xxh3_128()
    written = 0
    out.write(npy_header(dtype, shape))
    for chunk in chunks:
        flat = np.ascontiguousarray(chunk).reshape(-1)
        step = 1 << 24
        for lo in range(0, flat.shape[0], step):
            view = memoryview(flat[lo : lo + step]).cast("B")
            h.update(view)
            out.write(view)
            written += view.nbytes
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if written != want:
        raise OutputError(f"{out.name}: wrote {written} bytes, expected {want}")
    return h.hexdigest()


class CacheWriter:
    """Writes the three arrays of one cache, then its sidecar, with the atomic-output
    protocol: the ``.npy`` files appear together (after all are fsynced), the sidecar last,
    and a stale sidecar is removed first so it can never vouch for new arrays."""

    def __init__(self, paths: dict, overwrite: bool = True):
        self.paths = paths
        folder = os.path.dirname(paths["meta"]) or "."
        ensure_folder(folder, "index folder")
        self._outputs: dict[str, AtomicOutput] = {}
        self.digests: dict[str, dict] = {}
        try:
            os.unlink(paths["meta"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"cannot write {paths['meta']}: {exc.strerror or exc}") from None

    def add(self, name: str, chunks, dtype, shape) -> None:
        # never through a symlink: a link planted in the cache folder is replaced, its
        # target never written
        out = AtomicOutput(self.paths[name], follow_symlinks=False)
        self._outputs[name] = out
        digest = _write_npy(out, chunks, dtype, shape)
        self.digests[name] = {"dtype": np.dtype(dtype).str, "shape": [int(x) for x in shape],
                              "xxh3_128": digest}

    def commit(self, meta: dict) -> None:
        AtomicGroup([self._outputs[n] for n in ARRAYS]).commit()
        text = json.dumps(dict(meta, arrays=self.digests), indent=1) + "\n"
        with AtomicOutput(self.paths["meta"], follow_symlinks=False) as out:
            out.write(text.encode("utf-8"))

    def abort(self) -> None:
        for out in self._outputs.values():
            out.abort()


def make_meta(params, sizes, tokens_per_epoch, num_epochs, total) -> dict:
    return {
        "format": META_FORMAT,
        "version": META_VERSION,
        "params": asdict(params),
        "num_samples": params.num_samples,
        "num_docs": int(sizes.shape[0]),
        "tokens_per_epoch": int(tokens_per_epoch),
        "sizes_xxh3_128": _sizes_digest(sizes),
        "num_epochs": int(num_epochs),
        "total_samples": int(total),
    }


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


def expectations(sizes: np.ndarray, params: OrderParams) -> _Expect:
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


def _regular(path: str) -> os.stat_result | None:
    """The stat of ``path`` (through a symlink) when it is a regular file; None when it does
    not exist; CacheMismatchError when it is something else (a link to ``/dev/zero``, a
    FIFO, a folder), which would read without end or block."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheMismatchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CacheMismatchError(f"{path}: not a regular file")
    return st


def _load_npy(path: str) -> np.ndarray:
    if _regular(path) is None:
        raise CacheMismatchError(f"{path}: missing")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError, pickle.UnpicklingError) as exc:
        raise CacheMismatchError(
            f"{path}: not a readable .npy file ({' '.join(str(exc).split())[:200]})") from None


def _check_layout(paths: dict, expect: _Expect) -> dict:
    arrays = {}
    for name in ARRAYS:
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


#: a sidecar is a few hundred bytes; more is not one of ours
_META_MAX_BYTES = 1 << 20


def _read_meta(path: str) -> dict | None:
    if _regular(path) is None:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(_META_MAX_BYTES + 1)
        if len(raw) > _META_MAX_BYTES:
            raise ValueError(f"larger than {_META_MAX_BYTES} bytes")
        meta = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CacheMismatchError(
            f"{path}: unreadable sidecar ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:
        raise CacheMismatchError(f"{path}: unreadable sidecar (nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise CacheMismatchError(f"{path}: not a pythia-data index-map sidecar")
    if not isinstance(meta.get("arrays", {}), dict) or not all(
            isinstance(v, dict) for v in (meta.get("arrays") or {}).values()):
        raise CacheMismatchError(f"{path}: not a pythia-data index-map sidecar (bad 'arrays')")
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
    for name in ARRAYS:
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
    doc_idx, sample_idx, shuffle_idx = (arrays[n] for n in ARRAYS)
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
    expect = expect or expectations(sizes, params)
    meta = _read_meta(paths["meta"])
    if meta is not None:
        _check_meta(meta, paths["meta"], expect)
    arrays = _check_layout(paths, expect)
    if meta is not None:
        _check_digests(meta, arrays, paths)
    else:
        _check_structure(arrays, sizes, expect, paths)
    return arrays
