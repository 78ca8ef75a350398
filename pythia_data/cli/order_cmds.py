"""``order build``, ``order verify`` and ``locate``: GPT-NeoX v1.0's training order."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    checked_params,
    force_option,
    order_options,
    progress_factory,
    say_notes,
)
from pythia_data.errors import VerificationError
from pythia_data.order import (
    ORDER_KINDS,
    PreshuffledOrder,
    TrainingOrder,
    detect_order,
    verify_cache,
)
from pythia_data.order.cache import resolve_sizes
from pythia_data.order.registry import config_defaults


@cli.group("order")
def order_group() -> None:
    """GPT-NeoX v1.0 training order: doc_idx, sample_idx and shuffle_idx cache files.

    \b
    Examples:
      pythia-data order build pile/document --config pythia-160m.yml
      pythia-data order verify pile/document --train-iters 143000
    """


@order_group.command("build")
@order_options
@force_option("existing cache files (rebuilt, not checked)")
def order_build(data, train_iters, batch_size, seq_length, seed, configs, index_dir, as_json,
                quiet, force) -> None:
    """Build (or load and check) the training order of DATA and write GPT-NeoX's cache files.

    DATA is a dataset prefix, .bin/.idx, shard or folder. A cache already there is used
    only after checking it; one that does not match is an error (use --force).

    \b
    Examples:
      pythia-data order build pile/document
      pythia-data order build pile/document --config pythia-160m.yml --index-dir idx/
      pythia-data order build data/tiny --train-iters 10 --batch-size 4 --seq-length 8 --force
    """
    params = checked_params(train_iters, batch_size, seq_length, seed, configs)
    order = TrainingOrder.build(data, params, index_dir=index_dir, use_cache=not force,
                                write_cache=True, progress=progress_factory(quiet))
    summary = order.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    p = order.params
    click.echo(f"params         train_iters {p.train_iters}, batch {p.batch_size}, "
               f"seq_length {p.seq_length}, seed {p.seed}")
    click.echo(f"documents      {order.num_docs:,} ({order.tokens_per_epoch:,} tokens per epoch)")
    click.echo(f"epochs         {order.num_epochs}")
    click.echo(f"samples        {p.num_samples:,} requested, {order.total_samples:,} in the index")
    verb = {"built": "wrote", "cache": "loaded", "neox-cache": "loaded (GPT-NeoX cache)"}
    for name in ("doc_idx", "sample_idx", "shuffle_idx", "meta"):
        # a GPT-NeoX-written cache has no sidecar: name only files that exist
        if name in order.cache_paths and os.path.isfile(order.cache_paths[name]):
            click.echo(f"{verb.get(order.source, order.source):<14} {order.cache_paths[name]}")
    say_notes(order, quiet)


@order_group.command("verify")
@order_options
def order_verify(data, train_iters, batch_size, seq_length, seed, configs, index_dir, as_json,
                 quiet) -> None:
    """Check existing cache files of DATA against a fresh build (nothing is written).

    Reports the first index where each file differs and whether shuffle_idx is a
    permutation; exit status 1 on any mismatch.

    \b
    Examples:
      pythia-data order verify pile/document
      pythia-data order verify pile/document --config pythia-160m.yml --json
    """
    params = checked_params(train_iters, batch_size, seq_length, seed, configs)
    report = verify_cache(data, params, index_dir=index_dir, progress=progress_factory(quiet))
    if as_json:
        click.echo(json.dumps(report))
    else:
        for name, entry in report["arrays"].items():
            click.echo(_verify_line(name, entry))
    if not report["ok"]:
        entries = report["arrays"].items()
        missing = [n for n, e in entries if not e["exists"]]
        bad = [n for n, e in entries if e["exists"] and not e.get("ok")]
        if len(missing) == len(report["arrays"]):
            folder = os.path.dirname(next(iter(report["arrays"].values()))["path"]) or "."
            raise VerificationError(f"no cache to verify: the cache files are missing in "
                                    f"{folder} (build them with 'pythia-data order build')")
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"does not match a fresh build: {', '.join(bad)}"] if bad else [])
        raise VerificationError(f"cache {'; '.join(parts)}")


def _verify_line(name: str, entry: dict) -> str:
    if not entry["exists"]:
        return f"MISSING   {name:<12} {entry['path']}"
    if "error" in entry:
        return f"BAD       {name:<12} {entry['path']}: {entry['error']}"
    parts = []
    if not entry["dtype_ok"]:
        parts.append(f"dtype {entry['dtype']}")
    if not entry["shape_ok"]:
        parts.append(f"shape {tuple(entry['shape'])}")
    if entry["first_difference"] is not None:
        k = entry["first_difference"]
        where = f"row {k // 2}" if name == "sample_idx" else f"index {k}"
        parts.append(f"first difference at {where}")
    if "is_permutation" in entry:
        if entry["is_permutation"]:
            parts.append("a permutation")
        else:
            parts.append(f"NOT a permutation (index {entry['first_not_permutation']})")
    status = "OK" if entry["ok"] else "MISMATCH"
    return f"{status:<9} {name:<12} {entry['path']}" + (f": {', '.join(parts)}" if parts else "")


@cli.command("locate")
@order_options
@click.option("--document", "-d", type=int, required=True, help="Document (sequence) index.")
@click.option("--all", "show_all", is_flag=True,
              help="Also list samples past the last training iteration (never trained on).")
@click.option("--order", "order_kind", type=click.Choice(["auto", *ORDER_KINDS]),
              default="auto", show_default=True,
              help="auto: preshuffled when every sequence has seq_length + 1 tokens, else "
                   "neox (as for 'batches').")
def locate(data, train_iters, batch_size, seq_length, seed, configs, index_dir, as_json, quiet,
           document, show_all, order_kind) -> None:
    """Where document D of DATA was trained on: iteration, position in the batch and
    token span, for every time it occurs in the order (the GPT-NeoX v1.0 order, whose
    cache is built or reused as by 'order build'; or, for a preshuffled dataset, sequence
    D is row D of what 'batches' writes).

    \b
    Examples:
      pythia-data locate pile/document -d 12345
      pythia-data locate pile/document -d 12345 --all --json
    """
    if document < 0:
        raise click.BadParameter(f"must be >= 0, not {document}", param_hint="--document")
    batch, seq = config_defaults(configs)
    params = checked_params(train_iters, batch_size, seq_length, seed, configs,
                            defaults=(batch, seq))
    sizes, _prefix, _ds = resolve_sizes(data, None)
    if order_kind == "auto":
        order_kind = detect_order(SimpleNamespace(sizes=sizes), params.seq_length)
    if order_kind == "preshuffled":
        hits = PreshuffledOrder(params).locate(SimpleNamespace(sizes=sizes), document)
        occurrences = 1
    else:
        order = TrainingOrder.build(data, params, index_dir=index_dir,
                                    progress=progress_factory(quiet))
        say_notes(order, quiet)
        hits = order.locate(document)
        occurrences = order.num_epochs
    untrained = sum(not h["trained"] for h in hits)
    if not show_all:
        hits = [h for h in hits if h["trained"]]
    if as_json:
        click.echo(json.dumps({"document": document, "size": int(sizes[document]),
                               "order": order_kind, "occurrences": occurrences, "hits": hits}))
        return
    if not hits:
        past = (f"; {untrained} occurrence{'s' if untrained != 1 else ''} past the end "
                "with --all" if untrained else "")
        click.echo(f"document {document} was not trained on within "
                   f"{params.train_iters} iterations{past}")
        return
    click.echo("# iteration batch_position sample sample_tokens doc_tokens occurrence")
    for h in hits:
        st, dt = h["sample_tokens"], h["doc_tokens"]
        mark = "" if h["trained"] else " untrained"
        click.echo(f"{h['iteration']} {h['batch_position']} {h['sample']} "
                   f"{st[0]}:{st[1]} {dt[0]}:{dt[1]} {h['occurrence']}{mark}")
