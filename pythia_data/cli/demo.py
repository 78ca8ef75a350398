"""``pythia-data demo``: build the embedded demo dataset and run the main job on it."""

from __future__ import annotations

import click

from pythia_data.cli.app import cli
from pythia_data.cli.format_cmds import format_info
from pythia_data.demo import build_demo
from pythia_data.indexed import IndexedDataset


def _step(title: str) -> None:
    click.echo("")
    click.secho(f"== {title}", bold=True)


@cli.command()
@click.argument("folder", default="pythia-demo", required=False)
def demo(folder: str) -> None:
    """Build a small Pythia-layout dataset in FOLDER (default ./pythia-demo) and run
    the main job on it. Offline, deterministic, idempotent."""
    files = build_demo(folder)
    state = "reused (intact)" if files.reused else "built"
    _step(f"demo dataset {state}: {files.source}")
    for shard in files.shards:
        click.echo(f"  {shard.name}  {shard.stat().st_size:,} bytes")
    click.echo(f"  {files.prefix.name}.idx, manifest {files.manifest.name}")

    _step("info (shards read in place)")
    with IndexedDataset(files.prefix) as ds:
        click.echo(format_info(ds.stats()))
