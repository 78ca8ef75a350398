"""``pythia-data batches``: dump the batches of training iterations A..B (inclusive)."""

from __future__ import annotations

import os
import sys

import click

from pythia_data.batches import FORMATS, BatchReader, check_output, write_batches
from pythia_data.batches.sinks import SINKS, infer_format, known_suffixes, output_names
from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    checked_params,
    emit_summary,
    force_option,
    load_tokenizer_option,
    order_options,
    progress_factory,
    say_notes,
    tokenizer_options,
    writes_to_stdout,
)
from pythia_data.dataset import IndexedDataset
from pythia_data.io.atomic import claim_outputs, refuse_overlap
from pythia_data.order import ORDER_KINDS, resolve_order
from pythia_data.order.registry import config_defaults


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
    help=f"Output file ({', '.join('*' + x for x in known_suffixes())}), - for stdout, a "
    "FIFO / device, or a folder with --steps-per-file.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format [from OUTPUT's suffix; raw for stdout, FIFOs and devices].",
)
@force_option("an existing output file")
@click.option(
    "--order",
    "order_kind",
    type=click.Choice(["auto", *ORDER_KINDS]),
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
@click.option(
    "--tokenizer",
    "-t",
    "spec",
    default=None,
    help="Decode rows with this tokenizer (tokenizer.json, folder or hub id; 'bundled' = "
    "GPT-NeoX-20B): needed by --format text, adds a text field to jsonl and parquet.",
)
@tokenizer_options
@click.option(
    "--steps-per-file",
    type=click.IntRange(min=1),
    default=None,
    help="parquet: OUTPUT is a folder of train-{E:06d}.parquet files, one per K iterations.",
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
    force,
    spec,
    backend,
    steps_per_file,
):
    """Dump the token batches of iterations START..END (inclusive) of DATA.

    Iteration k is samples k*B .. (k+1)*B-1 of the training order. npy holds an array of
    shape ((END-START+1)*B, seq_length+1) in the dataset's dtype, like Pythia's
    indicies.npy; bin a preshuffled-style dataset; jsonl one object per sequence
    (iteration, index_in_batch, sample, tokens); raw the tokens little-endian; text each
    row decoded under a line '# iteration I row R' (needs --tokenizer); parquet columns
    uid, batch_idx, token_ids, index_in_batch (+ text with --tokenizer), one file or, with
    --steps-per-file K, a folder of train-{E:06d}.parquet holding iterations E-K..E-1.

    A file is written atomically and an existing one is replaced only with --force; a
    FIFO, a device or /dev/fd/N (bash's >(...)) is streamed into. Binary output is refused
    on a terminal. When the data goes to stdout, --json goes to stderr (no summary line).

    \b
    Examples:
      pythia-data batches DATA -s 0 -e 9 -o first10.npy
      pythia-data batches DATA -s 100 --format jsonl | head -n 2
      pythia-data batches DATA -s 0 -e 999 --window 0:32 -o head.raw --force
      pythia-data batches DATA -s 5 --config pythia-160m.yml -o it5.bin --json
      pythia-data batches DATA -s 0 --format text --tokenizer bundled | less
      pythia-data batches DATA -s 0 -e 142999 -o parquet/ --steps-per-file 1000
    """
    if end is None:
        end = start
    options = {}
    if steps_per_file is not None:
        folders = [k.name for k in SINKS.values() if "steps_per_file" in k.options]
        if fmt is None and len(folders) == 1:
            fmt = folders[0]
        if fmt not in folders:
            raise click.BadParameter(f"only the {' / '.join(folders)} format writes a folder",
                                     param_hint="--steps-per-file")
        options["steps_per_file"] = steps_per_file
    kind = SINKS[infer_format(output, fmt)]
    if "decode" in kind.required and spec is None:
        raise click.BadParameter(f"the {kind.name} format needs --tokenizer (e.g. --tokenizer "
                                 "bundled)", param_hint="--format")
    if spec is not None and not kind.decodes:
        raise click.BadParameter(f"the {kind.name} format has no text to add",
                                 param_hint="--tokenizer")
    wanted = dict(options)
    if spec is not None:
        wanted["decode"] = True  # (the tokenizer is loaded once the output is known good)
    fmt = check_output(kind.name, output, overwrite=force, **wanted)
    # the output's lock first: a second run into the same file is refused before any work
    with claim_outputs([] if steps_per_file is not None or os.path.isdir(output)
                       else output_names(fmt, output)):
        if spec is not None:
            options["decode"] = load_tokenizer_option(spec, backend).decode
        _run(data, start, end, output, fmt, options, order_kind, train_iters, batch_size,
             seq_length, seed, configs, index_dir, quiet, window, rank, world_size, force,
             as_json)


def _run(data, start, end, output, fmt, options, order_kind, train_iters, batch_size,
         seq_length, seed, configs, index_dir, quiet, window, rank, world_size, force,
         as_json) -> None:
    progress = progress_factory(quiet)
    batch, seq = config_defaults(configs)
    params = checked_params(train_iters, batch_size, seq_length, seed, configs,
                            defaults=(batch, seq))
    with IndexedDataset(data) as ds:
        if output != "-" and not os.path.isdir(output):
            refuse_overlap(output_names(fmt, output), [*map(str, ds.bin_paths), ds.idx_path])
        order = resolve_order(ds, order_kind, params, index_dir=index_dir, progress=progress)
        say_notes(order, quiet)
        reader = BatchReader(ds, order, window=window, rank=rank, world_size=world_size)
        stream = sys.stdout.buffer if output == "-" else None
        summary = write_batches(reader, start, end, output, fmt, stream=stream,
                                progress=progress, overwrite=force, **options)
    files = summary["files"]
    shown = "stdout" if output == "-" else " and ".join(files) if files else output
    emit_summary(
        summary,
        f"wrote {summary['rows']} sequences x {summary['width']} tokens "
        f"({summary['dtype']}, {summary['format']}, {summary['order']} order, "
        f"iterations {start}..{end}) to {shown}",
        as_json=as_json, data_on_stdout=writes_to_stdout(output),
    )
