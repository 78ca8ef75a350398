"""The inverse of a GPT-NeoX training order: from a document to the training rows that
hold it. Built once per order and cached beside the order's cache files.

Three arrays (D = len(doc_idx) = epochs x documents, S = samples in the index):

* ``doc_pos`` (documents, epochs), uint32 (int64 when D >= 2**32): the positions of each
  document in ``doc_idx``, ascending (the inverse of ``doc_idx``);
* ``row_sample`` (S,), ``shuffle_idx``'s dtype: the training sample that reads row ``j`` of
  ``sample_idx`` (the inverse permutation of ``shuffle_idx``);
* ``pos_ckpt`` (ceil(D / 16) + 1,), int64: where every 16th ``doc_idx`` position starts in
  the token stream the samples are cut from (the inverse of ``sample_idx``: row ``j`` is
  stream tokens ``[j * seq_length, (j + 1) * seq_length]``, so a stream offset gives its
  rows by division).

Files, next to ``PREFIX_..._doc_idx.npy``::

    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_find_doc_pos.npy
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_find_row_sample.npy
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_find_pos_ckpt.npy
    PREFIX_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_pythia_find_meta.json

written with the package's atomic protocol (the arrays appear together, the sidecar last).
The sidecar names the order they were made from (its params, document count, sizes hash,
epochs, samples and the xxh3-128 of its three arrays) and the xxh3-128 of each array here.
Loading checks all of it. Made for another order (the order was rebuilt): rebuilt and
replaced. Same order but different contents: :class:`CacheMismatchError` (exit 1).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np
import xxhash

from pythia_data.errors import CacheMismatchError, OutputError
from pythia_data.format.npy import npy_header
from pythia_data.io.atomic import AtomicGroup, AtomicOutput, atomic_write_text
from pythia_data.kernels import find as KF
from pythia_data.order import cache as C

__all__ = ["OrderInverse", "inverse_paths"]

FORMAT = "pythia-data/find-inverse"
VERSION = 1
NAMES = ("doc_pos", "row_sample", "pos_ckpt")


def inverse_paths(order) -> dict | None:
    """The inverse's file names beside the order's cache (None for an order in memory)."""
    meta = (getattr(order, "cache_paths", None) or {}).get("meta")
    if not meta or not meta.endswith("_pythia_meta.json"):
        return None
    stem = meta[: -len("_pythia_meta.json")]
    out = {n: f"{stem}_pythia_find_{n}.npy" for n in NAMES}
    out["meta"] = f"{stem}_pythia_find_meta.json"
    return out


def _digest(arr: np.ndarray) -> str:
    h = xxhash.xxh3_128()
    flat = np.ascontiguousarray(arr).reshape(-1)
    step = 1 << 24
    for lo in range(0, flat.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(flat[lo:lo + step])).cast("B"))
    return h.hexdigest()


def _order_fingerprint(order) -> dict:
    """What the inverse depends on: the order's inputs and its three arrays' digests (read
    from the order's sidecar when it has one, which loading the order has checked)."""
    digests = None
    meta_path = (getattr(order, "cache_paths", None) or {}).get("meta")
    if meta_path and getattr(order, "source", "") in ("built", "cache") and os.path.isfile(
            meta_path):
        try:
            with open(meta_path, encoding="utf-8") as f:
                arrays = json.load(f).get("arrays") or {}
            digests = {n: arrays[n]["xxh3_128"] for n in C.ARRAYS}
        except (OSError, ValueError, KeyError, TypeError):
            digests = None
    if digests is None:
        digests = {n: _digest(getattr(order, n)) for n in C.ARRAYS}
    return {
        "params": asdict(order.params),
        "num_docs": int(order.sizes.shape[0]),
        "sizes_xxh3_128": C._sizes_digest(order.sizes),
        "num_epochs": int(order.num_epochs),
        "total_samples": int(order.total_samples),
        "order_arrays": digests,
    }


class OrderInverse:
    """The three inverse arrays of one order (see the module docstring)."""

    shift = KF.CKPT_SHIFT

    def __init__(self, doc_pos, row_sample, pos_ckpt, source: str = "memory", paths=None):
        self.doc_pos = doc_pos
        self.row_sample = row_sample
        self.pos_ckpt = pos_ckpt
        self.source = source  # "built", "cache" or "memory"
        self.paths = dict(paths or {})
        self.note = None

    # -- building
    @staticmethod
    def _makers(order):
        return [("doc_pos", lambda: KF.doc_positions(order.doc_idx, order.sizes.shape[0],
                                                      order.num_epochs)),
                ("row_sample", lambda: KF.invert_permutation(order.shuffle_idx)),
                ("pos_ckpt", lambda: KF.stream_checkpoints(order.doc_idx, order.sizes))]

    @classmethod
    def _arrays(cls, order, progress=None, sink=None) -> dict:
        """Build the three arrays (in threads: the kernels release the GIL, and the three
        are independent); ``sink(name, array)`` (when given) takes each, in order, as soon
        as it is made."""
        steps = cls._makers(order)
        out = {}
        workers = min(len(steps), os.cpu_count() or 1)

        def run(update):
            with ThreadPoolExecutor(workers, thread_name_prefix="inverse") as pool:
                futures = [pool.submit(make) for _, make in steps]
                for k, (name, _) in enumerate(steps):
                    arr = futures[k].result()
                    futures[k] = None  # the array goes once written
                    if sink is None:
                        out[name] = arr
                    else:
                        sink(name, arr)
                    del arr
                    if update:
                        update(1)

        if progress is None:
            run(None)
        else:
            with progress("find: inverse order", len(steps), "arrays") as update:
                run(update)
        return out

    @classmethod
    def build(cls, order, progress=None) -> OrderInverse:
        """In memory, nothing written."""
        a = cls._arrays(order, progress)
        return cls(a["doc_pos"], a["row_sample"], a["pos_ckpt"], "memory")

    @classmethod
    def for_order(cls, order, progress=None, use_cache: bool = True) -> OrderInverse:
        """Load the checked cache beside ``order``'s, else build it (and write it there when
        the order has cache files and their folder is writable)."""
        paths = inverse_paths(order)
        if paths is None:
            return cls.build(order, progress)
        fingerprint = _order_fingerprint(order)
        note = None
        if use_cache and os.path.isfile(paths["meta"]):
            loaded = cls._load(paths, order, fingerprint)
            if loaded is not None:
                return loaded
            note = "the find index was made for another order: rebuilt"
        folder = os.path.dirname(paths["meta"]) or "."
        if not C.folder_writable(folder):
            a = cls._arrays(order, progress)
            inv = cls(a["doc_pos"], a["row_sample"], a["pos_ckpt"], "memory")
            inv.note = f"{folder} is not writable: the find index is kept in memory"
            return inv
        try:
            cls._write(paths, order, fingerprint, progress)
        except OutputError as exc:
            if "another pythia-data is writing" not in str(exc):
                raise
            # a second find over the same order at the same time: do not wait for it
            inv = cls.build(order, progress)
            inv.note = "another pythia-data is writing the find index: built in memory"
            return inv
        inv = cls(*(np.load(paths[n], mmap_mode="r") for n in NAMES), "built", paths)
        inv.note = note
        return inv

    # -- cache files
    @classmethod
    def _write(cls, paths: dict, order, fingerprint: dict, progress=None) -> None:
        """Build and write the arrays one at a time, commit them together, sidecar last."""
        try:
            os.unlink(paths["meta"])  # a stale sidecar must never vouch for new arrays
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"cannot write {paths['meta']}: {exc.strerror or exc}") from None
        outputs = []
        described = {}

        def sink(name, arr):
            arr = np.ascontiguousarray(arr)
            out = AtomicOutput(paths[name])
            outputs.append(out)
            out.write(npy_header(arr.dtype, arr.shape))
            flat = arr.reshape(-1)
            h = xxhash.xxh3_128()
            step = 1 << 24
            for lo in range(0, flat.shape[0], step):
                view = memoryview(flat[lo:lo + step]).cast("B")
                h.update(view)
                out.write(view)
            described[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape),
                               "xxh3_128": h.hexdigest()}

        try:
            cls._arrays(order, progress, sink)
            AtomicGroup(outputs).commit()
        except BaseException:
            for out in outputs:
                out.abort()
            raise
        meta = {"format": FORMAT, "version": VERSION, "shift": KF.CKPT_SHIFT,
                "order": fingerprint, "arrays": described}
        atomic_write_text(paths["meta"], json.dumps(meta, indent=1) + "\n")

    @classmethod
    def _load(cls, paths: dict, order, fingerprint: dict) -> OrderInverse | None:
        """The checked cache, or None when it was made for another order."""
        try:
            with open(paths["meta"], encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise CacheMismatchError(f"{paths['meta']}: unreadable ({exc}); delete it to "
                                     "rebuild the find index") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CacheMismatchError(f"{paths['meta']}: not a pythia-data find index sidecar")
        if meta.get("version") != VERSION or meta.get("shift") != KF.CKPT_SHIFT:
            return None
        if meta.get("order") != fingerprint:
            return None
        n_docs, epochs = order.sizes.shape[0], order.num_epochs
        d = n_docs * epochs
        expect = {
            "doc_pos": ((n_docs, epochs), np.dtype(np.uint32 if d < 2**32 else np.int64)),
            "row_sample": ((order.total_samples,), np.dtype(order.shuffle_idx.dtype)),
            "pos_ckpt": ((((d + (1 << KF.CKPT_SHIFT) - 1) >> KF.CKPT_SHIFT) + 1,),
                         np.dtype(np.int64)),
        }
        described = meta.get("arrays") or {}
        arrays = []
        for name in NAMES:
            path = paths[name]
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise CacheMismatchError(f"{path}: not a readable .npy file ({exc}); delete "
                                         "it to rebuild the find index") from None
            shape, dtype = expect[name]
            if arr.shape != shape or arr.dtype.newbyteorder("=") != dtype.newbyteorder("="):
                raise CacheMismatchError(f"{path}: shape {arr.shape} / dtype {arr.dtype}, "
                                         f"expected {shape} / {dtype}; delete it to rebuild")
            digest = C._file_digest(path, arr.offset, arr.nbytes) if isinstance(
                arr, np.memmap) else _digest(arr)
            if (described.get(name) or {}).get("xxh3_128") != digest:
                raise CacheMismatchError(f"{path}: contents differ from when it was written; "
                                         "delete it to rebuild the find index")
            arrays.append(arr)
        return cls(*arrays, "cache", paths)

    # -- using it
    def stream_starts(self, order, positions) -> np.ndarray:
        """Stream offset (tokens) where each ``doc_idx`` position starts."""
        return KF.stream_starts(positions, order.doc_idx, order.sizes, self.pos_ckpt,
                                self.shift)
