"""``stats``: what is in a dataset, or in the batches of iterations A..B of its training
order: tokens, documents, EOD tokens per row, document lengths, the most frequent tokens,
and how often a token sequence occurs per range of iterations."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from pythia_data.dataset import IndexedDataset
from pythia_data.errors import UsageError
from pythia_data.find.engine import Finder
from pythia_data.io.atomic import atomic_write_bytes
from pythia_data.order import BatchReader, OrderParams, resolve_order
from pythia_data.order.mappings import as_order

__all__ = ["Stats", "stats", "write_plot", "log2_histogram"]

SCAN_TOKENS = 1 << 24


@dataclass
class Stats:
    """The result of :func:`stats` (``to_dict()`` is what ``--json`` prints).

    ``scope`` is ``dataset`` (every token of the data file) or ``iterations`` (the rows of
    iterations ``start_iteration..end_iteration``). ``doc_lengths`` says what the length
    histogram counts: ``documents`` (sizes from the index) or ``pieces`` (runs of tokens in
    the rows ending at an EOD or at the row's end). Histogram bins are ``[lo, hi)``."""

    scope: str
    tokens: int
    documents: int
    eod_id: int | None
    eod_tokens: int
    doc_lengths: str
    doc_length_histogram: list[dict]
    top_tokens: list[dict]
    start_iteration: int | None = None
    end_iteration: int | None = None
    rows: int | None = None
    order: str | None = None
    eod_per_row: dict | None = None
    frequency: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _log2_bins(values: np.ndarray) -> np.ndarray:
    """Bin of each value: 0 for 0, k + 1 for [2**k, 2**(k+1)) (exact: frexp, no log2)."""
    values = np.asarray(values, dtype=np.int64)
    _, exp = np.frexp(values.astype(np.float64))  # v = m * 2**exp, m in [0.5, 1)
    return np.where(values > 0, exp, 0).astype(np.int64)


def _bins_to_list(counts: np.ndarray) -> list[dict]:
    out = []
    for b, c in enumerate(np.asarray(counts).tolist()):
        if c:
            out.append({"lo": 0 if b == 0 else 1 << (b - 1), "hi": 1 if b == 0 else 1 << b,
                        "count": int(c)})
    return out


def log2_histogram(values: np.ndarray) -> list[dict]:
    """Counts in bins [0, 1), [1, 2), [2, 4), [4, 8) ... (empty bins left out)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return []
    return _bins_to_list(np.bincount(_log2_bins(values)))


def _small_histogram(values: np.ndarray) -> list[dict]:
    """Exact counts per value (for EOD per row: small numbers)."""
    counts = np.bincount(np.asarray(values, dtype=np.int64))
    return [{"value": v, "count": int(c)} for v, c in enumerate(counts.tolist()) if c]


def _top(counts: np.ndarray, k: int, decode) -> list[dict]:
    k = min(int(k), int((counts > 0).sum()))
    if k <= 0:
        return []
    idx = np.argpartition(-counts, k - 1)[:k]
    idx = idx[np.lexsort((idx, -counts[idx]))]
    out = []
    for t in idx.tolist():
        entry = {"id": int(t), "count": int(counts[t])}
        if decode is not None:
            try:
                entry["text"] = decode([int(t)])
            except Exception:  # noqa: BLE001 - an id the tokenizer does not know
                entry["text"] = None
        out.append(entry)
    return out


def _bincount_stream(ds: IndexedDataset, workers: int, progress) -> np.ndarray:
    n = ds.num_tokens
    bounds = [(lo, min(lo + SCAN_TOKENS, n)) for lo in range(0, n, SCAN_TOKENS)]

    def one(b):
        return np.bincount(ds.read_tokens(b[0], b[1] - b[0]).astype(np.int64, copy=False))

    total = np.zeros(1, dtype=np.int64)

    def add(total, c):
        if c.shape[0] > total.shape[0]:
            c = c.copy()
            c[: total.shape[0]] += total
            return c
        total[: c.shape[0]] += c
        return total

    bar = progress("stats: scan", n * ds.dtype.itemsize, "B") if progress else None
    update = bar.__enter__() if bar else None
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for b, c in zip(bounds, pool.map(one, bounds)):
                total = add(total, c)
                if update:
                    update((b[1] - b[0]) * ds.dtype.itemsize)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    return total


def stats(data, *, start_iteration: int | None = None, end_iteration: int | None = None,
          order="auto", params: OrderParams | None = None, index_dir=None, top: int = 20,
          eod_id: int | None = 0, decode=None, queries=None, bins: int = 20,
          workers: int | None = None, progress=None) -> Stats:
    """Statistics of ``data`` (a path or an open :class:`IndexedDataset`).

    Without iterations: the whole data file (sizes from the index, one pass over the
    tokens). With ``start_iteration``/``end_iteration`` (inclusive; either alone means a
    single iteration or from there to the last): the rows of those iterations of the
    training order. ``queries`` (a list of :class:`~pythia_data.find.queries.Query`) adds
    how often they occur per range of iterations (``bins`` equal ranges over the
    iterations, all of the run when no range is given). ``decode`` (ids -> text) names the
    top tokens. ``eod_id`` None: no EOD counts."""
    if top < 0:
        raise UsageError(f"top must be >= 0, got {top}")
    if bins < 1:
        raise UsageError(f"bins must be >= 1, got {bins}")
    workers = max(1, int(workers or min(os.cpu_count() or 1, 8)))
    own = not isinstance(data, IndexedDataset)
    ds = IndexedDataset(data) if own else data
    try:
        ranged = start_iteration is not None or end_iteration is not None
        need_order = ranged or bool(queries)
        resolved = None
        notes = []
        if need_order:
            if isinstance(order, str):
                resolved = resolve_order(ds, order, params or OrderParams(),
                                         index_dir=index_dir, progress=progress)
            else:
                resolved = order
            notes.extend(as_order(resolved).report.notes)  # e.g. where the cache went
        if ranged:
            reader = BatchReader(ds, resolved)
            a = start_iteration if start_iteration is not None else 0
            b = end_iteration if end_iteration is not None else a
            a, b = reader.check_range(a, b)
            out = _iteration_stats(reader, a, b, top, eod_id, decode)
        else:
            out = _dataset_stats(ds, top, eod_id, decode, workers, progress)
            a, b = None, None
        out.notes = notes
        if queries:
            reader = BatchReader(ds, resolved)
            fa = 0 if a is None else a
            fb = reader.num_iterations - 1 if b is None else b
            if fb < fa:
                raise UsageError("the order has no iterations to count hits in")
            out.frequency = _frequency(ds, resolved, queries, fa, fb, bins, workers, progress)
        return out
    finally:
        if own:
            ds.close()


def _dataset_stats(ds, top, eod_id, decode, workers, progress) -> Stats:
    counts = _bincount_stream(ds, workers, progress) if ds.num_tokens else np.zeros(1, np.int64)
    eod = int(counts[eod_id]) if eod_id is not None and eod_id < counts.shape[0] else 0
    return Stats(
        scope="dataset", tokens=int(ds.num_tokens), documents=len(ds), eod_id=eod_id,
        eod_tokens=eod, doc_lengths="documents",
        doc_length_histogram=log2_histogram(np.asarray(ds.sizes)),
        top_tokens=_top(counts, top, decode))


def _iteration_stats(reader: BatchReader, a: int, b: int, top, eod_id, decode) -> Stats:
    counts = np.zeros(1, dtype=np.int64)
    eod_rows = []
    piece_hist = np.zeros(64, dtype=np.int64)
    rows = 0
    for chunk in reader.iter_chunks(a, b):
        tok = np.asarray(chunk.tokens)
        rows += tok.shape[0]
        c = np.bincount(tok.reshape(-1).astype(np.int64, copy=False))
        if c.shape[0] > counts.shape[0]:
            c = c.copy()
            c[: counts.shape[0]] += counts
            counts = c
        else:
            counts[: c.shape[0]] += c
        if eod_id is not None:
            is_eod = tok == eod_id
            eod_rows.append(is_eod.sum(axis=1))
            # pieces: runs ending at an EOD (inclusive) or at the row's end; marking every
            # row's last token makes each piece end inside its row
            mark = is_eod.copy()
            mark[:, -1] = True
            ends = np.flatnonzero(mark.reshape(-1)) + 1
            lengths = np.diff(ends, prepend=0)
            piece_hist += np.bincount(_log2_bins(lengths), minlength=64)[:64]
    per_row = np.concatenate(eod_rows) if eod_rows else np.zeros(0, dtype=np.int64)
    eod = int(counts[eod_id]) if eod_id is not None and eod_id < counts.shape[0] else 0
    hist = _bins_to_list(piece_hist)
    eod_per_row = None
    if eod_id is not None and per_row.size:
        eod_per_row = {"mean": float(per_row.mean()), "min": int(per_row.min()),
                       "max": int(per_row.max()), "histogram": _small_histogram(per_row)}
    return Stats(
        scope="iterations", tokens=rows * reader.width, documents=eod, eod_id=eod_id,
        eod_tokens=eod, doc_lengths="pieces" if eod_id is not None else "none",
        doc_length_histogram=hist, top_tokens=_top(counts, top, decode),
        start_iteration=a, end_iteration=b, rows=rows, order=reader.kind,
        eod_per_row=eod_per_row)


def _frequency(ds, order, queries, a, b, bins, workers, progress) -> dict:
    finder = Finder(ds, queries, order, progress=progress, workers=workers)
    n_iter = b - a + 1
    bins = min(bins, n_iter)
    width = -(-n_iter // bins)
    counts = np.zeros(bins, dtype=np.int64)
    per_query = np.zeros((bins, len(queries)), dtype=np.int64)
    batch = finder.batch_size
    for arrays in finder.hit_arrays():
        if not len(arrays):
            continue
        first = arrays.part_lo == 0  # an occurrence counts once, where it starts
        it = arrays.sample[first] // batch
        q = arrays.query[first]
        keep = (it >= a) & (it <= b)
        k = (it[keep] - a) // width
        counts += np.bincount(k, minlength=bins)
        np.add.at(per_query, (k, q[keep]), 1)
    out_bins = []
    for i in range(bins):
        lo = a + i * width
        hi = min(b, lo + width - 1)
        out_bins.append({"start_iteration": lo, "end_iteration": hi, "count": int(counts[i])})
    return {
        "queries": [q.to_dict() for q in queries],
        "bins": out_bins,
        "per_query": per_query.sum(axis=0).tolist(),
        "total": int(counts.sum()),
        "notes": finder.notes,
    }


def write_plot(result: Stats, path) -> None:
    """The histograms, top tokens and frequency as one PNG (needs matplotlib: the
    ``[plot]`` extra), written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'pythia-data[plot]'") from None
    panels = ["lengths", "top"]
    if result.eod_per_row:
        panels.append("eod")
    if result.frequency:
        panels.append("freq")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)))
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels):
        if panel == "lengths":
            h = result.doc_length_histogram
            ax.bar(range(len(h)), [x["count"] for x in h])
            ax.set_xticks(range(len(h)), [f"{x['lo']}" for x in h], rotation=45, fontsize=7)
            ax.set_title(f"{'document' if result.doc_lengths == 'documents' else 'piece'} "
                         "lengths (tokens, log2 bins)")
        elif panel == "top":
            t = result.top_tokens[::-1]
            labels = [repr(x.get("text")) if x.get("text") is not None else str(x["id"])
                      for x in t]
            ax.barh(range(len(t)), [x["count"] for x in t])
            ax.set_yticks(range(len(t)), labels, fontsize=7)
            ax.set_title("most frequent tokens")
        elif panel == "eod":
            h = result.eod_per_row["histogram"]
            ax.bar([x["value"] for x in h], [x["count"] for x in h])
            ax.set_title("EOD tokens per row")
        else:
            f = result.frequency["bins"]
            ax.plot([x["start_iteration"] for x in f], [x["count"] for x in f], marker="o")
            ax.set_xlabel("iteration")
            ax.set_title("occurrences per range of iterations")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
