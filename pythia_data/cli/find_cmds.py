"""``find`` (where in training a token sequence was seen) and ``stats`` (what is in the
data or in iterations A..B)."""

from __future__ import annotations

import json
import os

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    checked_params,
    force_option,
    load_tokenizer_option,
    order_options,
    progress_factory,
    tokenizer_options,
)
from pythia_data.errors import UsageError
from pythia_data.order import ORDER_KINDS
from pythia_data.order.registry import config_defaults

_ORDER_HELP = "auto: preshuffled when every sequence has seq_length + 1 tokens, else neox."


def _tokenizer_factory(spec, backend):
    cache = {}

    def get():
        if "t" not in cache:
            cache["t"] = load_tokenizer_option(spec, backend)
        return cache["t"]

    return get


def _queries(text, tokens, queries_file, spec, backend):
    from pythia_data.find.queries import (
        check_ids,
        queries_from_file,
        queries_from_text,
        queries_from_tokens,
    )

    get = _tokenizer_factory(spec, backend)
    out = []
    for t in text:
        if t == "":
            raise click.BadParameter("empty text", param_hint="--text")
    if text:
        out += queries_from_text(list(text), get())
    start = len({q.index for q in out})
    if tokens:
        out += queries_from_tokens(list(tokens), start_index=start)
    if queries_file is not None:
        start = len({q.index for q in out})
        from pythia_data.find.queries import Query

        out += [Query(q.label, q.tokens, q.index + start, q.variant)
                for q in queries_from_file(queries_file, get)]
    if spec is not None and tokens:
        vocab = get().vocab_size
        for q in out:
            if q.variant == "tokens":
                check_ids(q.tokens, "int64", vocab, where=f" (--tokens {q.label})")
    return out


def _without_numba_extensions(backend: str) -> None:
    """Leave third-party numba extensions unloaded in this process. numba runs every
    installed ``numba_extensions`` entry point before its first compile or cache load
    (awkward, for one, registers itself there: ~0.3 s warm, ~0.4 s from a cold page cache,
    more than the scan of a 1 GB file); find's and stats' kernels are plain numba over numpy
    arrays and need none. Not with the cuda tokenizer backend (numba.cuda may be one)."""
    if backend == "cuda":
        return
    try:
        from numba.core import entrypoints
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    if hasattr(entrypoints, "_already_initialized"):
        entrypoints._already_initialized = True


def _order_params(train_iters, batch_size, seq_length, seed, configs):
    # --batch-size 0 is an error, never "use the default"
    return checked_params(train_iters, batch_size, seq_length, seed, configs,
                          defaults=config_defaults(configs))


@cli.command("find")
@order_options
@click.option("--text", "-t", "text", multiple=True,
              help="Text to find (repeatable): tokenized as given and with a leading space.")
@click.option("--tokens", "tokens", multiple=True, metavar="IDS",
              help="Comma-separated token ids to find (repeatable).")
@click.option("--queries", "queries_file", type=click.Path(dir_okay=False), default=None,
              help="File of queries: one text per line, or .jsonl with a string, "
                   "{\"text\": ...} or {\"tokens\": [...]} per line.")
@click.option("--order", "order_kind", type=click.Choice(["auto", *ORDER_KINDS]),
              default="auto", show_default=True, help=_ORDER_HELP)
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Only the first N hits (by iteration).")
@click.option("--all", "show_all", is_flag=True,
              help="Also samples past the run's last iteration (never trained on).")
@click.option("--tokenizer", "spec", default=None,
              help="Tokenizer of the dataset for --text (tokenizer.json, folder or hub id) "
                   "[bundled GPT-NeoX-20B]; with --tokens, ids are checked against it.")
@tokenizer_options
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scan threads [CPU count, at most 8].")
def find_cmd(data, train_iters, batch_size, seq_length, seed, configs, index_dir, as_json,
             quiet, text, tokens, queries_file, order_kind, limit, show_all, spec, backend,
             workers):
    """Where in training DATA's tokens match a text or token sequence: iteration, index in
    the batch, offset in the row (of seq_length + 1 tokens), and the document.

    Every occurrence in every training row, sorted by iteration. A text is searched as
    given and with a leading space (BPE tokenizes a word differently after a space); the
    variant column says which matched. An occurrence that crosses the end of a row is
    listed once per row that holds part of it, with the part (query tokens a:b). The
    neox order's inverse is built on first use and cached beside the order's cache.
    With --json: one JSON object per hit (JSON lines; keys iteration, index_in_batch,
    offset, document, query, ...).

    \b
    Examples:
      pythia-data find pile/document --text "the quick brown fox" --limit 20
      pythia-data find pile/document --tokens 510,3158,8516 --json | head
      pythia-data find preshuffled/ --queries phrases.txt --json > hits.jsonl
    """
    if not (text or tokens or queries_file):
        raise click.UsageError("give --text, --tokens or --queries")
    _without_numba_extensions(backend)
    from pythia_data.dataset import IndexedDataset
    from pythia_data.find import Finder

    queries = _queries(text, tokens, queries_file, spec, backend)
    params = _order_params(train_iters, batch_size, seq_length, seed, configs)
    progress = progress_factory(quiet)
    with IndexedDataset(data) as ds:
        finder = Finder(ds, queries, order_kind, params, index_dir=index_dir,
                        progress=progress, include_untrained=show_all, workers=workers)
        arrays = finder.collect(limit)
        if not quiet:
            for note in finder.notes:
                click.echo(note, err=True)
        if not as_json:
            click.echo("# iteration index_in_batch offset document doc_offset query_index "
                       "variant part query")
        n = 0
        for hit in finder.hits(arrays):
            n += 1
            if as_json:
                click.echo(json.dumps(hit.to_dict(), ensure_ascii=False))
            else:
                part = "-" if hit.part is None else f"{hit.part[0]}:{hit.part[1]}"
                mark = "" if hit.trained else " untrained"
                click.echo(f"{hit.iteration} {hit.index_in_batch} {hit.offset} {hit.document} "
                           f"{hit.doc_offset} {hit.query_index} {hit.variant.replace(' ', '-')} "
                           f"{part} {json.dumps(hit.query, ensure_ascii=False)}{mark}")
    if not quiet:
        more = " (--limit reached)" if limit and n == limit else ""
        click.echo(f"{n} hit{'s' if n != 1 else ''} for {len(queries)} token "
                   f"sequence{'s' if len(queries) != 1 else ''}{more}", err=True)


@cli.command("stats")
@order_options
@click.option("--start-iteration", "-s", "start", type=click.IntRange(min=0), default=None,
              help="First iteration: statistics of the rows of iterations START..END "
                   "[without: of the whole data file].")
@click.option("--end-iteration", "-e", "end", type=click.IntRange(min=0), default=None,
              help="Last iteration, inclusive [the start iteration].")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many of the most frequent tokens to list.")
@click.option("--text", "text", multiple=True,
              help="Count this text per range of iterations (repeatable; as for find).")
@click.option("--tokens", "tokens", multiple=True, metavar="IDS",
              help="Count these comma-separated ids per range of iterations (repeatable).")
@click.option("--bins", type=click.IntRange(min=1), default=20, show_default=True,
              help="Ranges of iterations for --text/--tokens counts.")
@click.option("--eod", type=click.IntRange(min=0), default=0, show_default=True,
              help="The end-of-document token id.")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw the histograms, top tokens and counts into FILE.png "
                   "(needs pythia-data[plot]).")
@force_option("an existing --plot file")
@click.option("--order", "order_kind", type=click.Choice(["auto", *ORDER_KINDS]),
              default="auto", show_default=True, help=_ORDER_HELP)
@click.option("--tokenizer", "spec", default=None,
              help="Tokenizer to decode the top tokens and --text [bundled GPT-NeoX-20B].")
@tokenizer_options
@click.option("--no-decode", is_flag=True, help="List top tokens as ids only.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scan threads [CPU count, at most 8].")
def stats_cmd(data, train_iters, batch_size, seq_length, seed, configs, index_dir, as_json,
              quiet, start, end, top, text, tokens, bins, eod, plot, force, order_kind, spec,
              backend, no_decode, workers):
    """Tokens, documents, EOD tokens per row, document lengths and the most frequent
    tokens of DATA (or of the rows of iterations START..END), and with --text/--tokens how
    often those occur per range of iterations.

    \b
    Examples:
      pythia-data stats pile/document
      pythia-data stats pile/document -s 0 -e 99 --json
      pythia-data stats pile/document --text "Hello world" --bins 50 --plot hello.png
    """
    _without_numba_extensions(backend)
    from pythia_data.find.stats import stats, write_plot

    if plot is not None and not force and os.path.lexists(plot) and os.path.isfile(plot):
        raise UsageError(f"{plot} exists (use --force to replace it)")
    get = _tokenizer_factory(spec, backend)
    queries = _queries(text, tokens, None, spec, backend) if (text or tokens) else None
    params = _order_params(train_iters, batch_size, seq_length, seed, configs)
    decode = None if no_decode else (lambda ids: get().decode(ids))
    if start is None and end is not None:
        start = 0
    result = stats(data, start_iteration=start, end_iteration=end, order=order_kind,
                   params=params, index_dir=index_dir, top=top, eod_id=eod, decode=decode,
                   queries=queries, bins=bins, workers=workers,
                   progress=progress_factory(quiet))
    if not quiet:
        for note in result.notes + ((result.frequency or {}).get("notes") or []):
            click.echo(note, err=True)
    if plot is not None:
        write_plot(result, plot)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    _print_table(result)
    if plot is not None and not quiet:
        click.echo(f"plot written to {plot}", err=True)


def _print_table(r) -> None:
    scope = ("whole data file" if r.scope == "dataset" else
             f"iterations {r.start_iteration}..{r.end_iteration} ({r.order} order, "
             f"{r.rows:,} rows)")
    click.echo(f"scope          {scope}")
    click.echo(f"tokens         {r.tokens:,}")
    what = "sequences" if r.scope == "dataset" else "EOD-terminated documents"
    click.echo(f"documents      {r.documents:,} ({what})")
    if r.eod_id is not None:
        click.echo(f"EOD tokens     {r.eod_tokens:,} (id {r.eod_id})")
    if r.eod_per_row:
        e = r.eod_per_row
        click.echo(f"EOD per row    mean {e['mean']:.2f}, min {e['min']}, max {e['max']}")
    label = "document" if r.doc_lengths == "documents" else "piece"
    click.echo(f"{label} lengths (tokens):")
    peak = max([b["count"] for b in r.doc_length_histogram] or [1])
    for b in r.doc_length_histogram:
        bar = "#" * max(1, round(40 * b["count"] / peak)) if b["count"] else ""
        rng = f"{b['lo']}" if b["hi"] - b["lo"] == 1 else f"{b['lo']}-{b['hi'] - 1}"
        click.echo(f"  {rng:>13} {b['count']:>12,} {bar}")
    if r.top_tokens:
        click.echo("top tokens:")
        for t in r.top_tokens:
            text = json.dumps(t["text"], ensure_ascii=False) if t.get("text") is not None else ""
            click.echo(f"  {t['id']:>8} {t['count']:>14,} {text}")
    if r.frequency:
        f = r.frequency
        labels = sorted({q["query"] for q in f["queries"]})
        click.echo(f"occurrences of {', '.join(json.dumps(x, ensure_ascii=False) for x in labels)}"
                   f" per range of iterations (total {f['total']:,}):")
        for b in f["bins"]:
            click.echo(f"  {b['start_iteration']:>8}..{b['end_iteration']:<8} {b['count']:>12,}")
