"""``download``: a thin command over :mod:`pythia_data.hub` (tqdm bars live here only)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading

import click

from pythia_data.cli.app import cli
from pythia_data.cli.options import json_option, quiet_option, show_progress


def _quiet_hub_logging() -> None:
    """huggingface_hub logs each transfer retry as a warning, and warns (UserWarning) about
    disk space and symlinks; our summary and one-line errors say what matters."""
    import warnings

    warnings.filterwarnings("ignore", module=r"huggingface_hub(\.|$)")
    with contextlib.suppress(Exception):
        from huggingface_hub.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


@contextlib.contextmanager
def _bars(plan, quiet: bool):
    """Byte bars for downloading and verifying on stderr (off with -q or without a TTY)."""
    verify_total = plan.fetch_bytes + sum(f.size for f in plan.to_adopt)
    if not show_progress(quiet) or verify_total == 0:
        yield None
        return
    from tqdm import tqdm

    kw = dict(unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, dynamic_ncols=True)
    bars = {"download": tqdm(total=plan.fetch_bytes, desc="download", position=0, **kw),
            "verify": tqdm(total=verify_total, desc="verify", position=1, **kw)}
    lock = threading.Lock()

    def progress(phase: str, path: str, n: int) -> None:
        bar = bars.get(phase)
        if bar is not None:
            with lock:
                bar.update(n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _warn(message: str) -> None:
    click.echo(f"pythia-data: warning: {message}", err=True)


def _show_list(as_json: bool) -> None:
    from pythia_data.hub import list_known
    from pythia_data.hub.download import human

    rows = list_known(online=True)
    if as_json:
        click.echo(json.dumps({"datasets": rows}))
        return
    for r in rows:
        size = human(r["bytes"]) if r["bytes_exact"] else f"~{human(r['bytes'])}"
        where = "" if r["source"] == "hub" else "  (offline figures)"
        click.echo(f"{r['name']:<27} {r['repo_id']:<45} {r['files']:>4} files {size:>9}{where}")
        click.echo(f"{'':<27} {r['description']}")
    if any(r["source"] != "hub" for r in rows):
        err = next((r["error"] for r in rows if r.get("error")), None)
        if err:
            _warn(f"hub not asked: {err}")


@cli.command("download")
@click.argument("dataset", metavar="NAME|REPO_ID", required=False)
@click.option("--local-dir", "-d", type=click.Path(file_okay=False),
              help="Folder to download into [./REPO_NAME].")
@click.option("--include", "-I", multiple=True, metavar="GLOB",
              help="Only repository paths matching GLOB (repeatable; '*' crosses '/'; a folder "
                   "name selects what is under it), e.g. --include 'seed3/*'.")
@click.option("--revision", "-r", default=None, help="Branch, tag or commit [main].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=2, show_default=True,
              help="Files downloaded side by side (each is hashed as soon as it lands).")
@click.option("--dry-run", is_flag=True,
              help="List what would be downloaded (and write the manifest); download nothing.")
@click.option("--allow-bad", is_flag=True,
              help="Exit 0 even when an index file fails its structural check (pythia #190) or "
                   "a hub digest disagrees with Pythia's published one.")
@click.option("--list", "list_", is_flag=True, help="Show the known datasets and exit.")
@json_option
@quiet_option
def download_cmd(dataset, local_dir, include, revision, jobs, dry_run, allow_bad, list_, as_json,
                 quiet) -> None:
    """Download a Pythia dataset (or any dataset repository) from the Hugging Face hub,
    verifying every file's SHA256 as it lands.

    NAME is one of pythia-deduped-idxmaps, pile-deduped-preshuffled,
    pile-standard-preshuffled, pile-preshuffled-seeds (see --list), or any OWNER/NAME.
    Before downloading: the hub's digests are written to DIR/REPO_NAME.sha256, compared with
    Pythia's published ones, and free disk space is checked. A file that fails its hash is
    downloaded once more, then reported (exit 1) and deleted. Rerun the same command to
    resume: verified files are skipped without being read. GPT-NeoX index files
    (*_shuffle_idx.npy ...) are checked structurally (exit 1 on failure unless --allow-bad).
    Uses huggingface_hub's settings: HF_TOKEN / `huggingface-cli login`, HF_ENDPOINT, HF_HOME.

    Exit status: 0 all verified, 1 a file failed verification or a check, 2 bad input,
    missing repository/file/revision, refused access, no connection or no disk space.

    \b
    Examples:
      pythia-data download --list
      pythia-data download pythia-deduped-idxmaps --dry-run
      pythia-data download pile-preshuffled-seeds --include 'seed3/*' -d seeds/
    """
    if list_:
        _show_list(as_json)
        return
    if not dataset:
        raise click.UsageError("missing NAME|REPO_ID (or --list)")
    from pythia_data.hub.download import human, plan_download, run_download

    _quiet_hub_logging()
    plan = plan_download(dataset, local_dir, include=include, revision=revision,
                         check_space=not dry_run)
    for d in plan.disagreements:
        _warn(f"{d['path']}: the hub's sha256 {d['hub']} differs from Pythia's published "
              f"{d['pythia']}")
    for b in plan.known_bad:
        _warn(f"{b['path']}: {b['reason']}")
    for w in plan.warnings:
        _warn(w)
    head = (f"{plan.repo_id}@{plan.commit[:12]}: {len(plan.files)} files, "
            f"{human(plan.total_bytes)}; {len(plan.verified)} already verified, "
            f"{len(plan.to_adopt)} present to check, {len(plan.to_fetch)} to download "
            f"({human(plan.fetch_bytes)})")
    if dry_run:
        if as_json:
            out = plan.to_dict()
            out["dry_run"] = True
            out["fetch"] = [f.to_dict() for f in plan.to_fetch]
            click.echo(json.dumps(out))
            return
        click.echo(head)
        verified = set(plan.verified)
        adopt = {f.path for f in plan.to_adopt}
        for f in plan.files:
            status = "verified" if f.path in verified else "check" if f.path in adopt else "fetch"
            click.echo(f"{status:<8} {f.size:>15,}  {f.digest or '-'}  {f.path}")
        if plan.manifest_path:
            click.echo(f"manifest: {plan.manifest_path}")
        return
    if not quiet and not as_json:
        click.echo(head, err=True)
    n_warnings = len(plan.warnings)
    import warnings

    # huggingface_hub's own warnings (disk space, symlinks) while transferring: our summary
    # and one-line errors say what matters
    with _bars(plan, quiet or as_json) as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = run_download(plan, jobs=jobs, progress=progress, allow_bad=allow_bad)
        except KeyboardInterrupt:
            # Download threads cannot be stopped; do not wait for the file in flight.
            click.echo("pythia-data: interrupted (rerun the same command to resume)", err=True)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(130)
    plan = result.plan
    for w in plan.warnings[n_warnings:]:
        _warn(w)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        retried = set(result.retried)
        for p in result.downloaded:
            again = " (on the second try)" if p in retried else ""
            click.echo(f"{plan.local_dir / p}: downloaded, OK{again}")
        for p in result.adopted:
            click.echo(f"{plan.local_dir / p}: already there, OK")
        for fail in result.failed:
            click.echo(f"{plan.local_dir / fail['path']}: FAILED ({fail['reason']})")
        for c in result.checks:
            if not c.ok:
                click.echo(f"{c.path}: BAD {c.kind}: {c.message}")
        if not quiet:
            n_ok = len(plan.verified) + len(result.downloaded) + len(result.adopted)
            click.echo(f"pythia-data: {n_ok} of {len(plan.files)} files verified in "
                       f"{plan.local_dir}", err=True)
            if plan.manifest_path:
                click.echo(f"pythia-data: manifest {plan.manifest_path}", err=True)
        if result.ok and result.next_steps:
            click.echo("next:")
            for s in result.next_steps:
                click.echo(f"  {s}")
    for c in result.checks:
        if not c.ok and not as_json:
            _warn(f"{c.path}: fails the {c.kind} check: {c.message}")
    if not result.ok:
        bad = [f["path"] for f in result.failed]
        if not allow_bad:
            bad += [c.path for c in result.bad_checks] + [d["path"] for d in plan.disagreements]
        click.echo(f"pythia-data: verification failed: {', '.join(bad)}"
                   + ("" if result.failed else " (--allow-bad to accept)"), err=True)
        raise click.exceptions.Exit(1)


__all__ = ["download_cmd"]


def checksum_from_hub(paths, repo, revision, jobs, as_json, quiet, bar) -> None:
    """``checksum --from-hub``: render :func:`pythia_data.hub.check_against_hub`."""
    from pythia_data.hub import check_against_hub

    _quiet_hub_logging()
    with bar as progress:
        report = check_against_hub(repo, list(paths), revision=revision, jobs=jobs,
                                   progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for r in report.results:
            if r.status == "ok":
                click.echo(f"{r.path}: OK")
            elif r.status == "mismatch":
                click.echo(f"{r.path}: FAILED (expected {r.expected}, got {r.digest})")
            elif r.status == "missing":
                click.echo(f"{r.path}: MISSING ({r.repo_path} of {report.repo_id})")
            else:
                click.echo(f"{r.path}: NOT IN {report.repo_id}")
        if not quiet:
            n = sum(r.status == "ok" for r in report.results)
            click.echo(f"pythia-data: {n} of {len(report.results)} files match "
                       f"{report.repo_id}@{report.commit[:12]}", err=True)
    if not report.ok:
        bad = [r.path for r in report.results if r.status != "ok"]
        if not as_json:
            click.echo(f"pythia-data: verification failed: {', '.join(bad)}", err=True)
        raise click.exceptions.Exit(1)
