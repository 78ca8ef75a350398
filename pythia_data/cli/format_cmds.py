"""``info`` and ``merge``: the format layer's commands."""

from __future__ import annotations

import json

import click

from pythia_data.cli.app import cli
from pythia_data.dataset import IndexedDataset, merge_datasets


def format_info(stats: dict) -> str:
    return "\n".join(
        [
            f"version        {stats['version']}",
            f"dtype          {stats['dtype']}",
            f"sequences      {stats['num_sequences']:,}",
            f"documents      {stats['num_documents']:,}",
            f"tokens         {stats['num_tokens']:,}",
            f".bin bytes     {stats['bin_bytes']:,}",
            f"length         min {stats['min_length']:,} / mean {stats['mean_length']:,.1f}"
            f" / max {stats['max_length']:,}",
        ]
        + (["layout         non-canonical (pointers are not the running sum of the sizes)"]
           if stats.get("layout") == "non-canonical" else [])
        + ([f"dtype code     Megatron-LM's convention (6 = float64, 7 = float32), read as "
            f"{stats['dtype']}"] if stats.get("dtype_convention") == "megatron" else [])
    )


@cli.command()
@click.argument("prefix")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(prefix: str, as_json: bool) -> None:
    """Describe the dataset at PREFIX (prefix, .bin, .idx, a shard, or a folder)."""
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
def merge(output: str, inputs: tuple[str, ...]) -> None:
    """Concatenate datasets INPUTS... into OUTPUT (pointers and doc_idx rebased)."""
    with merge_datasets(output, list(inputs)) as ds:
        click.echo(
            f"wrote {ds.prefix}.bin/.idx: {len(ds):,} sequences, "
            f"{ds.num_documents:,} documents, {ds.num_tokens:,} tokens"
        )
