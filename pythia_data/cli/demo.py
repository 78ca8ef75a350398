"""``pythia-data demo``: build the embedded demo dataset and run the main job on it."""

from __future__ import annotations

import click
import numpy as np

from pythia_data.cli.app import cli
from pythia_data.cli.options import force_option, format_info
from pythia_data.demo import run_demo
from pythia_data.errors import CacheMismatchError
from pythia_data.order.params import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH, PYTHIA_TRAIN_ITERS


def _step(title: str) -> None:
    click.echo("")
    click.secho(f"== {title}", bold=True)


def _cmd(run, step: str) -> None:
    line = run.commands.get(step)
    if line:
        click.echo(f"  $ {line}")


def _row(tokens: np.ndarray, shown: int = 8) -> str:
    head = " ".join(f"{int(t):>5}" for t in tokens[:shown])
    return f"[{head} ... {int(tokens[-1]):>5}]"


@cli.command()
@click.argument("folder", default="pythia-demo", required=False)
@force_option("the demo's dataset and order caches (rebuilt instead of reused)")
def demo(folder: str, force: bool) -> None:
    """Build a small Pythia-layout dataset in FOLDER (default ./pythia-demo) and run the
    main job on it: verify the shards, unshard, reconstruct GPT-NeoX's training order and
    dump iterations 0..1; then tokenize a little real text (Python's docstrings) with the
    bundled GPT-NeoX-20B tokenizer and show a batch row as text. Offline, deterministic,
    idempotent. The first run compiles the Numba kernels (tens of seconds, part of the
    times it shows; cached for later runs).

    \b
    Examples:
      pythia-data demo
      pythia-data demo /tmp/pythia-demo
      pythia-data demo --force
    """
    try:
        run = run_demo(folder, force=force)
    except CacheMismatchError as exc:
        raise CacheMismatchError(f"{exc}; or rerun 'pythia-data demo --force'") from None
    files = run.files
    state = "reused (intact)" if files.reused else "built"
    _step(f"demo dataset {state}: {files.source}")
    for shard in files.shards:
        click.echo(f"  {shard.name}  {shard.stat().st_size:,} bytes")
    click.echo(f"  {files.prefix.name}.idx, manifest {files.manifest.name}")

    _step(f"checksum (sha256, against {files.manifest.name})")
    _cmd(run, "checksum")
    for r in run.checksum.results:
        click.echo(f"  {r.status.upper():<3} {r.name}")
    click.echo(f"  {run.checksum.summary()}")

    _step("unshard (one pass, verified)")
    _cmd(run, "unshard")
    click.echo(f"  {run.unshard.summary()}")

    _step(f"info: {run.merged_prefix}")
    _cmd(run, "info")
    click.echo("\n".join("  " + line for line in format_info(run.stats).splitlines()))

    order = run.order
    p = order.params
    how = "built" if order.source == "built" else "loaded from its checked cache"
    _step(f"training order (GPT-NeoX v1.0), {how}")
    _cmd(run, "order")
    click.echo(
        f"  train_iters {p.train_iters}, batch {p.batch_size}, seq_length {p.seq_length}, "
        f"seed {p.seed}: {order.params.num_samples:,} samples needed, "
        f"{order.num_epochs} epochs, {order.total_samples:,} samples in the index"
    )
    for name in ("doc_idx", "sample_idx", "shuffle_idx"):
        arr = getattr(order, name)
        click.echo(f"  {name:<12} {arr.dtype.name:<7} {str(arr.shape):<12} "
                   f"{order.cache_paths.get(name, '')}")

    s = run.batch_summary
    _step(f"batches: iterations 0..1 -> {run.batches_path}")
    _cmd(run, "batches")
    click.echo(f"  array {run.batches.shape} {run.batches.dtype} (rows = 2 x batch "
               f"{s['batch_size']}, columns = seq_length + 1)")
    per = s["batch_size"]
    for k in range(2):
        click.echo(f"  iteration {k}:")
        for i in range(min(3, per)):
            click.echo(f"    [{i}] {_row(run.batches[k * per + i])}")
        if per > 3:
            click.echo(f"    ... {per - 3} more")
    agree = "identical" if run.shards_agree else "DIFFERENT (a bug: please report it)"
    click.echo(f"  read from the shards in place instead: {agree}")
    if run.located:
        first = run.located[0]
        doc = int(order.doc_idx[first["doc_position"]])
        trained = [r for r in run.located if r["trained"]]
        where = ", ".join(f"it {r['iteration']} pos {r['batch_position']}" for r in trained[:6])
        more = f" (+{len(trained) - 6})" if len(trained) > 6 else ""
        click.echo(f"  document {doc} (opens sample 0) was trained at: {where}{more}")
        _cmd(run, "locate")
    click.echo("")
    click.echo("The order flags (--train-iters, --batch-size, --seq-length, or --config) "
               "matter: without them the order is Pythia's, "
               f"{PYTHIA_TRAIN_ITERS} x {PYTHIA_BATCH_SIZE} samples of {PYTHIA_SEQ_LENGTH} "
               "tokens, far more than this small dataset holds.")
    if run.text is not None:
        _show_text(run.text)
    if not run.shards_agree:
        raise SystemExit(1)


def _show_text(text, max_lines: int = 14) -> None:
    s = text.summary
    _step(f"real text: {s['documents']} Python standard-library docstrings -> {text.prefix}")
    click.echo(f"  tokenized with {s['tokenizer']} ({s['backend']} backend), EOD appended: "
               f"{s['tokens']:,} tokens, {s['dtype']}, in {s['seconds']:.2f} s "
               "(as GPT-NeoX's preprocess_data.py would; a first run's time includes "
               "compiling the tokenizer's Numba kernels, cached afterwards)")
    p = text.order.params
    click.echo(f"  training order: batch {p.batch_size}, seq_length {p.seq_length}; "
               f"iteration 0 as text -> {text.text_path}")
    click.echo(f"  $ {text.command}")
    click.echo(f"  iteration 0, row 0 ({text.row_tokens.size} tokens "
               f"[{' '.join(str(int(t)) for t in text.row_tokens[:6])} ...]):")
    lines = text.row_text.split("\n")
    for line in lines[:max_lines]:
        click.echo(f"  | {line}")
    if len(lines) > max_lines:
        click.echo(f"  | ... ({len(lines) - max_lines} more lines)")
