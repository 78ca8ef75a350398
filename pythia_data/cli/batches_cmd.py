"""``pythia-data batches``: dump the batches of training iterations A..B (inclusive)."""

from __future__ import annotations

import json
import sys

import click

from pythia_data.cli.app import cli
from pythia_data.cli.order_cmds import order_options  # DATA + order options, --json, -q

_FORMATS = ("npy", "bin", "jsonl", "raw")


def _resolve_order(
    ds, order_kind, train_iters, batch_size, seq_length, seed, config, index_dir, progress
):
    """(order or None, batch_size, seq_length) for the chosen --order."""
    from pythia_data.batches import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH, detect_order

    cfg = None
    if config:
        from pythia_data.order import load_neox_config

        cfg = load_neox_config(list(config))
    if seq_length is None:
        seq_length = cfg.seq_length if cfg is not None else PYTHIA_SEQ_LENGTH
    if batch_size is None:
        cfg_batch = getattr(cfg, "train_batch_size", None) if cfg is not None else None
        batch_size = cfg_batch or PYTHIA_BATCH_SIZE
    if order_kind == "auto":
        order_kind = detect_order(ds, seq_length)
    if order_kind == "preshuffled":
        return None, batch_size, seq_length

    from pythia_data.order import OrderParams, TrainingOrder

    overrides = {"train_iters": train_iters, "seq_length": seq_length, "seed": seed}
    if config:
        params = OrderParams.from_config(list(config), batch_size=batch_size, **overrides)
    else:
        params = OrderParams(
            batch_size=batch_size, **{k: v for k, v in overrides.items() if v is not None}
        )
    order = TrainingOrder.build(ds, params, index_dir=index_dir, progress=progress)
    return order, batch_size, seq_length


@cli.command("batches")
@order_options
@click.option(
    "--start-iteration",
    "-s",
    "start",
    type=click.IntRange(min=0),
    required=True,
    help="First iteration (0-based).",
)
@click.option(
    "--end-iteration",
    "-e",
    "end",
    type=click.IntRange(min=0),
    default=None,
    help="Last iteration, inclusive [the start iteration].",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="Output file (npy/bin/jsonl/raw by suffix), or - for stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default=None,
    help="Output format [from OUTPUT's suffix; raw for stdout].",
)
@click.option(
    "--order",
    "order_kind",
    type=click.Choice(["auto", "preshuffled", "neox"]),
    default="auto",
    show_default=True,
    help="auto: preshuffled when every sequence has seq_length + 1 tokens, else neox.",
)
@click.option(
    "--window",
    default=None,
    metavar="START:LENGTH",
    help="Only tokens [START, START+LENGTH) of each sequence (e.g. 0:32).",
)
@click.option(
    "--rank",
    type=int,
    default=0,
    show_default=True,
    help="Data-parallel rank: only the slice of each batch it saw.",
)
@click.option(
    "--world-size", type=int, default=1, show_default=True, help="Number of data-parallel ranks."
)
def batches_cmd(
    data,
    train_iters,
    batch_size,
    seq_length,
    seed,
    configs,
    index_dir,
    as_json,
    quiet,
    start,
    end,
    output,
    fmt,
    order_kind,
    window,
    rank,
    world_size,
):
    """Dump the token batches of iterations START..END (inclusive) of DATA.

    Iteration k is samples k*B .. (k+1)*B-1 of the training order. npy holds an array of
    shape ((END-START+1)*B, seq_length+1) in the dataset's dtype, like Pythia's
    indicies.npy; bin a preshuffled-style dataset; jsonl one object per sequence
    (iteration, index_in_batch, sample, tokens); raw the tokens little-endian.
    """
    from pythia_data.batches import BatchReader, write_batches
    from pythia_data.indexed import IndexedDataset
    from pythia_data.sinks import infer_format

    if end is None:
        end = start
    fmt = infer_format(output, fmt)
    if output == "-" and fmt == "bin":
        raise click.BadParameter(
            "bin writes PREFIX.bin/PREFIX.idx; give a file", param_hint="--format"
        )
    progress = not quiet and sys.stderr.isatty()
    with IndexedDataset(data) as ds:
        order, batch, seq = _resolve_order(
            ds, order_kind, train_iters, batch_size, seq_length, seed, configs, index_dir, progress
        )
        reader = BatchReader(
            ds,
            order,
            batch_size=batch,
            seq_length=seq,
            window=window,
            rank=rank,
            world_size=world_size,
        )
        stream = sys.stdout.buffer if output == "-" else None
        summary = write_batches(reader, start, end, output, fmt, stream=stream, progress=progress)
    if output == "-":
        return
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"wrote {summary['rows']} sequences x {summary['width']} tokens "
            f"({summary['dtype']}, {summary['format']}, {summary['order']} order, "
            f"iterations {start}..{end}) to {output}"
        )
