"""Find token sequences in the training data by training step, and describe the data.

    from pythia_data.find import find, stats
    for hit in find("pile/document", text="The quick brown fox", limit=10):
        print(hit.iteration, hit.index_in_batch, hit.offset, hit.variant)
    s = stats("pile/document", start_iteration=0, end_iteration=99)

See docs/find.md. Modules: :mod:`.queries` (text / ids / files -> token sequences),
:mod:`.inverse` (the order's inverse, cached), :mod:`.engine` (scan + map), :mod:`.stats`.
"""

from __future__ import annotations

from collections.abc import Iterator

from pythia_data.errors import UsageError
from pythia_data.find.engine import DEFAULT_MAX_HITS, Finder, Hit, HitArrays
from pythia_data.find.inverse import OrderInverse, inverse_paths
from pythia_data.find.queries import (
    Query,
    queries_from_file,
    queries_from_text,
    queries_from_tokens,
)
from pythia_data.find.stats import Stats, write_plot
from pythia_data.find.stats import stats as _stats

__all__ = ["DEFAULT_MAX_HITS", "Finder", "Hit", "HitArrays", "OrderInverse", "Query",
           "Stats", "find", "inverse_paths", "make_queries", "stats", "write_plot"]


def make_queries(text=None, tokens=None, queries_file=None, tokenizer=None) -> list[Query]:
    """Queries from ``text`` (a str or list of them: each as given and with a leading
    space), ``tokens`` (ids, a list of id lists, or comma-separated strings) and/or a file
    (one per line). ``tokenizer``: a :class:`~pythia_data.tokenize.Tokenizer`, or None for
    the bundled GPT-NeoX-20B (loaded only when a text query needs it)."""
    out: list[Query] = []
    cache = {}

    def tok():
        if tokenizer is not None:
            return tokenizer
        if "t" not in cache:
            from pythia_data.tokenize import load_tokenizer

            cache["t"] = load_tokenizer()
        return cache["t"]

    if text is not None:
        texts = [text] if isinstance(text, str) else list(text)
        if any(t == "" for t in texts):
            raise UsageError("empty query text")
        out += queries_from_text(texts, tok())
    if tokens is not None:
        out += queries_from_tokens(tokens, start_index=len({q.index for q in out}))
    if queries_file is not None:
        start = len({q.index for q in out})
        out += [Query(q.label, q.tokens, q.index + start, q.variant)
                for q in queries_from_file(queries_file, tok)]
    if not out:
        raise UsageError("nothing to find: give text, tokens or a queries file")
    return out


def find(data, text=None, *, tokens=None, queries=None, queries_file=None, tokenizer=None,
         order="auto", params=None, index_dir=None, limit: int | None = None,
         include_untrained: bool = False, workers: int | None = None, progress=None,
         max_hits: int | None = DEFAULT_MAX_HITS) -> Iterator[Hit]:
    """Yield every :class:`Hit` of the queries in ``data``'s training order, sorted by
    (iteration, index_in_batch, offset, query); the first ``limit`` only when given.

    ``data``: a dataset path (prefix, ``.bin``/``.idx``, a shard, a folder) or an open
    ``IndexedDataset``. Queries: ``text`` / ``tokens`` / ``queries_file`` (see
    :func:`make_queries`) or ready ``queries``. ``order``: ``auto`` | ``neox`` |
    ``preshuffled`` or an order object; ``params``: :class:`~pythia_data.order.OrderParams`
    (Pythia's by default). Hits past the run's last iteration only with
    ``include_untrained``."""
    from pythia_data.find.engine import find as _find

    if queries is None:
        queries = make_queries(text, tokens, queries_file, tokenizer)
    return _find(data, queries, order, params, index_dir=index_dir, limit=limit,
                 include_untrained=include_untrained, workers=workers, progress=progress,
                 max_hits=max_hits)


def stats(data, *, text=None, tokens=None, tokenizer=None, **kwargs) -> Stats:
    """:class:`Stats` of ``data`` (see :func:`pythia_data.find.stats.stats`); ``text`` /
    ``tokens`` add the per-iteration-range frequency of those queries."""
    queries = kwargs.pop("queries", None)
    if queries is None and (text is not None or tokens is not None):
        queries = make_queries(text, tokens, None, tokenizer)
    return _stats(data, queries=queries, **kwargs)
