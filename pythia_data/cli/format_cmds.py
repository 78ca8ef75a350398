"""``info`` and ``merge``: the format layer's commands."""

from __future__ import annotations

import json
import os

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    byte_progress,
    force_option,
    format_info,
    json_option,
    quiet_option,
)
from pythia_data.dataset import IndexedDataset, merge_datasets
from pythia_data.errors import OutputExistsError


@cli.command()
@click.argument("prefix")
@json_option
def info(prefix: str, as_json: bool) -> None:
    """Describe the dataset at PREFIX (prefix, .bin, .idx, a shard, or a folder).

    \b
    Examples:
      pythia-data info pile/document
      pythia-data info pile/document-00000-of-00082.bin --json
    """
    with IndexedDataset(prefix) as ds:
        stats = ds.stats()
        sharded = len(ds.bin_paths)
    if as_json:
        click.echo(json.dumps(stats))
    else:
        click.echo(format_info(stats))
        if sharded > 1:
            click.echo(f"shards         {sharded} (read in place)")


@cli.command()
@click.argument("output")
@click.argument("inputs", nargs=-1, required=True)
@force_option("an existing OUTPUT.bin/.idx")
@json_option
@quiet_option
def merge(output: str, inputs: tuple[str, ...], force: bool, as_json: bool, quiet: bool) -> None:
    """Concatenate datasets INPUTS... into OUTPUT (pointers and doc_idx rebased).

    OUTPUT.bin and OUTPUT.idx appear together, only when complete; existing ones are
    replaced only with --force.

    \b
    Examples:
      pythia-data merge all part1 part2 part3
      pythia-data merge all.bin data/*.bin --force --json
    """
    if not force:
        prefix = output[:-4] if output.endswith((".bin", ".idx")) else output
        for name in (prefix + ".bin", prefix + ".idx"):
            if os.path.lexists(name):
                raise OutputExistsError(name)
    total = 0
    for path in inputs:
        with IndexedDataset(path) as ds:
            total += int(ds.bin_bytes)
    with byte_progress(total, quiet, "merge") as progress:
        ds = merge_datasets(output, list(inputs), overwrite=force, progress=progress)
    with ds:
        summary = {
            "output": ds.prefix,
            "files": [ds.prefix + ".bin", ds.prefix + ".idx"],
            "inputs": list(inputs),
            "sequences": int(len(ds)),
            "documents": int(ds.num_documents),
            "tokens": int(ds.num_tokens),
            "dtype": ds.dtype.name,
            "bin_bytes": int(ds.bin_bytes),
        }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"wrote {ds.prefix}.bin/.idx: {summary['sequences']:,} sequences, "
            f"{summary['documents']:,} documents, {summary['tokens']:,} tokens"
        )
