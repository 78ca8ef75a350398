"""``checksum``, ``unshard`` and ``shard``: thin commands over integrity/ and shards/."""

from __future__ import annotations

import contextlib
import json
import os

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import (
    byte_progress,
    force_option,
    json_option,
    progress_factory,
    quiet_option,
)
from pythia_data.errors import OutputExistsError, PythiaDataError
from pythia_data.format.shardset import DEFAULT_SHARD_SIZE, find_shards
from pythia_data.integrity.hashing import ALGORITHMS
from pythia_data.integrity.verify import checksum_files
from pythia_data.io.atomic import atomic_write_text, refuse_overlap
from pythia_data.io.walk import walk_files
from pythia_data.shards import shard, unshard


def _paths_bytes(paths) -> int:
    total = 0
    for p in paths:
        if os.path.isdir(p):
            with contextlib.suppress(OSError, PythiaDataError):
                total += sum(q.stat().st_size for q in walk_files(p))
        elif os.path.isfile(p):
            total += os.path.getsize(p)
    return total


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1")
    return value


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--expected", "-c", "expected", type=click.Path(dir_okay=False),
              help="Manifest to check against ('HEX  NAME', 'NAME HEX' or 'SHA256 (NAME) = HEX'). "
                   "Default: known Pythia checksums, by file name.")
@click.option("--algorithm", "-a", type=click.Choice(sorted(ALGORITHMS)), default=None,
              help="sha256 (default) or xxh3 (128-bit, fast re-checks/fingerprints).")
@click.option("--jobs", "-j", type=int, default=None, callback=_positive,
              help="Files hashed side by side (default: all cores).")
@click.option("--write-manifest", type=click.Path(dir_okay=False),
              help="Write the computed digests here ('HEX  NAME', sha256sum style).")
@force_option("an existing --write-manifest file")
@click.option("--from-hub", metavar="REPO_ID",
              help="Check against the digests the Hugging Face hub states for this dataset "
                   "repository (or known name; see 'download --list').")
@click.option("--revision", default=None, help="With --from-hub: branch, tag or commit [main].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="local: --jobs threads here; ray: one Ray task per file (files on storage "
                   "every node sees; pip install 'pythia-data[ray]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="A running Ray cluster [a local one started for this command].")
@click.option("--job-dir", default=None, metavar="DIR",
              help="Record each file's digest here as it finishes; a rerun after an "
                   "interruption hashes only the files not recorded (same size and mtime).")
@json_option
@quiet_option
def checksum(paths, expected, algorithm, jobs, write_manifest, force, from_hub, revision,
             executor, ray_address, job_dir, as_json, quiet) -> None:
    """Hash files (or every file in folders) and check them against expected digests.

    Exit status: 0 when every file with an expected digest matches, 1 when any mismatches
    or is missing, 2 on bad input.

    \b
    Examples:
      pythia-data checksum pythia_deduped_pile_idxmaps/
      pythia-data checksum data/*.bin -c my.sha256
      pythia-data checksum -a xxh3 data/ --write-manifest data.xxh3 --force
    """
    if write_manifest and not force and os.path.lexists(write_manifest) \
            and os.path.isfile(write_manifest):
        raise OutputExistsError(write_manifest)
    if from_hub:
        from pythia_data.cli.hub_cmds import checksum_from_hub

        return checksum_from_hub(paths, from_hub, revision, jobs, as_json, quiet,
                                 byte_progress(_paths_bytes(paths), quiet, "checksum"))
    if write_manifest:
        from pythia_data.integrity.verify import expand_paths

        files, _, _ = expand_paths(list(paths))
        refuse_overlap([write_manifest], files)
    hash_many = None
    if executor != "local" or ray_address or job_dir:
        from pythia_data.jobs import make_executor
        from pythia_data.jobs.checksum import hash_files

        runner = make_executor(executor, jobs, ray_address=ray_address, mode="thread")

        def hash_many(files, algo):
            return hash_files(files, algo, runner, job_dir=job_dir,
                              progress=progress_factory(quiet))

    # the units draw their own bar (by file) when they hash
    with byte_progress(_paths_bytes(paths), quiet or hash_many is not None,
                       "checksum") as progress:
        report = checksum_files(list(paths), expected, algorithm, jobs=jobs, progress=progress,
                                hash_many=hash_many)
    if write_manifest:
        atomic_write_text(write_manifest, report.manifest_text())
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for r in report.results:
            shown = r.path or r.name
            if r.status == "ok":
                click.echo(f"{shown}: OK")
            elif r.status == "mismatch":
                click.echo(f"{shown}: FAILED (expected {r.expected}, got {r.digest})")
            elif r.status == "missing":
                click.echo(f"{shown}: MISSING")
            else:
                click.echo(f"{r.digest}  {shown}")
        if not quiet:
            click.echo(f"pythia-data: {report.summary()}", err=True)
    if not report.ok:
        bad = [r.name for r in report.results if r.status in ("mismatch", "missing")]
        if not as_json:
            click.echo(f"pythia-data: verification failed: "
                       f"{name_list(bad, len(report.results))}", err=True)
        raise click.exceptions.Exit(1)


def name_list(names: list[str], total: int, shown: int = 3) -> str:
    """``2 of 83 files (a, b)`` / ``40 of 83 files (a, b, c and 37 more)``: a bounded line."""
    head = ", ".join(names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} of {total} file{'s' if total != 1 else ''} ({head}{more})"


@cli.command("unshard")
@click.argument("shard_path", metavar="SHARD", type=click.Path())
@click.option("--output-dir", "-o", type=click.Path(file_okay=False),
              help="Where BASE.bin (and BASE.idx) go. Default: beside the shards.")
@click.option("--expected", "-c", type=click.Path(dir_okay=False),
              help="Manifest with per-shard, whole-file and/or .idx SHA256s. Default: "
                   "manifests beside the shards (*.sha256, *shard_hashes.txt), then the "
                   "known Pythia checksums.")
@click.option("--no-verify", is_flag=True, help="Copy without hashing.")
@click.option("--full-hash", is_flag=True,
              help="Also compute the whole file's SHA256 even when every shard's is known "
                   "(one extra sequential SHA256 pass over the data, on its own core).")
@click.option("--jobs", "-j", type=int, default=None, callback=_positive,
              help="Shards copied side by side (default: all cores).")
@force_option("an existing BASE.bin")
@click.option("--no-sync", is_flag=True,
              help="Do not fsync the output before renaming it (like cat/cp: faster when "
                   "it fits in memory; safe against interruption, not against power loss).")
@json_option
@quiet_option
def unshard_cmd(shard_path, output_dir, expected, no_verify, full_hash, jobs, force, no_sync,
                as_json, quiet) -> None:
    """Reassemble BASE.bin from its shards in one verified, atomic, resumable pass.

    SHARD is any shard's path, the prefix, or the folder holding the shards. Rerun the same
    command after an interruption to continue from the last completed shard.

    \b
    Examples:
      pythia-data unshard pythia_deduped_pile_idxmaps/
      pythia-data unshard data/document-00000-of-00082.bin -o merged/ --json
    """
    ss = find_shards(shard_path)
    with byte_progress(ss.total_bytes, quiet, "unshard") as progress:
        result = unshard(ss.paths[0], output_dir, expected=expected, verify=not no_verify,
                         full_hash=full_hash, jobs=jobs, overwrite=force, progress=progress,
                         sync=not no_sync)
    for w in result.warnings:
        click.echo(f"pythia-data: warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(result.summary())


@cli.command("shard")
@click.argument("bin_path", metavar="PREFIX.bin", type=click.Path(dir_okay=False))
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False))
@click.option("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, show_default=True,
              callback=_positive, help="Bytes per shard (all but the last).")
@click.option("--no-checksums", is_flag=True,
              help="Do not hash the shards nor write BASE.sha256.")
@force_option("existing shards")
@json_option
@quiet_option
def shard_cmd(bin_path, output_dir, shard_size, no_checksums, force, as_json, quiet) -> None:
    """Split PREFIX.bin into PREFIX-NNNNN-of-MMMMM.bin shards, named exactly as Pythia's.

    The shards appear under their names only when all are written; rerun the same command
    after an interruption to keep the completed (re-verified) shards and write the rest.

    \b
    Examples:
      pythia-data shard data/document.bin -o shards/
      pythia-data shard data/document.bin -o shards/ --shard-size 1000000000 --force
    """
    size = os.path.getsize(bin_path) if os.path.isfile(bin_path) else 0
    with byte_progress(size, quiet, "shard") as progress:
        result = shard(bin_path, output_dir, shard_size, checksums=not no_checksums,
                       overwrite=force, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        for p, s in zip(result.paths, result.sizes, strict=True):
            click.echo(f"{p}  {s}")
        if result.manifest:
            click.echo(f"checksums: {result.manifest}")


__all__ = ["byte_progress", "checksum", "find_shards", "shard_cmd", "unshard_cmd"]
