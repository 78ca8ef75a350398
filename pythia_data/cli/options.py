"""Shared CLI pieces: option decorators and progress bars (tqdm lives only in cli/)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys

import click

from pythia_data.errors import UsageError
from pythia_data.order.defaults import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_SEED,
    PYTHIA_SEQ_LENGTH,
    PYTHIA_TRAIN_ITERS,
)

__all__ = [
    "BUNDLED",
    "byte_progress",
    "emit_summary",
    "force_option",
    "format_info",
    "job_options",
    "json_option",
    "load_tokenizer_option",
    "make_job_executor",
    "order_options",
    "progress_factory",
    "quiet_option",
    "say_notes",
    "show_progress",
    "tokenizer_options",
    "writes_to_stdout",
]

#: What ``-q`` means on every command (and in the drop-in scripts): no progress bars and no
#: notes on stderr. Results (stdout, --json, the data itself) and errors are unchanged.
QUIET_HELP = "Quiet: no progress bars, no notes on stderr (results and errors still shown)."


def quiet_option(func):
    """``--quiet/-q`` (see :data:`QUIET_HELP`)."""
    return click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)(func)


def json_option(func):
    """``--json``: the result as one JSON object (on stderr when the data goes to stdout)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as one JSON object.")(func)


def force_option(what: str):
    """``--force``: replace an existing output (without it, an existing file is an error)."""
    return click.option("--force", "-f", is_flag=True, help=f"Replace {what}.")


def say_notes(order, quiet: bool) -> None:
    """Show an order's build notes (``order.report.notes``) on stderr, unless ``-q``."""
    if quiet:
        return
    for note in order.report.notes:
        click.echo(note, err=True)


#: ``--tokenizer bundled``: the GPT-NeoX-20B tokenizer shipped with the package.
BUNDLED = "bundled"


def tokenizer_options(func):
    """``--backend`` with the registered tokenizer backends as choices (registry order)."""
    from pythia_data.tokenize.registry import BACKENDS  # (imported by commands that use it)

    return click.option("--backend", type=click.Choice(list(BACKENDS)), default="cpu",
                        show_default=True,
                        help="Tokenizer engine: cpu (exact numba engine), hf (Hugging Face "
                             "tokenizers), cuda (numba.cuda; decoding runs on the CPU).")(func)


def load_tokenizer_option(spec, backend: str, **options):
    """The tokenizer a ``--tokenizer``/``--backend`` pair names (``spec`` None or
    ``bundled``: the bundled GPT-NeoX-20B)."""
    from pythia_data.tokenize import load_tokenizer

    if spec == BUNDLED:
        spec = None
    if backend == "hf" and options.get("workers"):
        # Hugging Face tokenizers sizes its thread pool from this on first use
        os.environ.setdefault("RAYON_NUM_THREADS", str(options["workers"]))
    tokenizer = load_tokenizer(spec, backend=backend, **options)
    from pythia_data.jobs.startup import settle

    settle()  # the loaded tables and kernels live to the end: out of full collections
    return tokenizer


def format_info(stats: dict) -> str:
    """``info``'s text: the lines describing a dataset (``IndexedDataset.stats()``)."""
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


def writes_to_stdout(target) -> bool:
    """Whether the output ``target`` is this process's stdout (``-``, ``/dev/stdout``,
    ``/dev/fd/1`` or any stream that is the same file), so that messages must go to stderr."""
    text = os.fspath(target)
    if text == "-":
        return True
    from pythia_data.io.atomic import is_stream_target

    if not is_stream_target(text):
        return False
    try:
        a, b = os.stat(text), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def emit_summary(summary: dict, text: str, *, as_json: bool, data_on_stdout: bool) -> None:
    """Print a command's result: JSON or a text line on stdout. When the data itself went to
    stdout, the text line is left out (the stream stays clean) and ``--json`` goes to stderr,
    so ``--json -o -`` keeps both."""
    if as_json:
        click.echo(json.dumps(summary), err=data_on_stdout)
    elif not data_on_stdout:
        click.echo(text)


def show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr, and only when it is a terminal and not ``--quiet``."""
    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def byte_progress(total: int, quiet: bool, desc: str):
    """A tqdm bar by bytes on stderr (off with --quiet or when stderr is not a TTY).

    Yields a callback ``progress(n)`` or ``None``.
    """
    if not show_progress(quiet):
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
               file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar.update
    finally:
        bar.close()


def progress_factory(quiet: bool):
    """A progress factory for the library (:mod:`pythia_data.progress`), or None."""
    if not show_progress(quiet):
        return None

    @contextlib.contextmanager
    def factory(desc: str, total: int, unit: str = "it"):
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                   file=sys.stderr, dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()

    return factory


def checked_params(train_iters, batch_size, seq_length, seed, configs, defaults=None):
    """The order parameters from the order options, each checked (``--batch-size 0`` is an
    error, never "use the default"); ``defaults`` = (batch size, sequence length) used for
    the ones not given."""
    from pythia_data.order import order_params

    for name, value, low in (("--train-iters", train_iters, 1), ("--batch-size", batch_size, 1),
                             ("--seq-length", seq_length, 1), ("--seed", seed, 0)):
        if value is not None and value < low:
            raise click.BadParameter(f"must be >= {low}, not {value}", param_hint=name)
    if seed is not None and seed > 0xFFFFFFFF:
        raise click.BadParameter(f"must be below 2**32, not {seed}", param_hint="--seed")
    if defaults is not None:
        batch_size = defaults[0] if batch_size is None else batch_size
        seq_length = defaults[1] if seq_length is None else seq_length
    return order_params(train_iters, batch_size, seq_length, seed, configs)


def order_options(func):
    """DATA plus the options that define the order (shared by all three commands)."""

    @click.argument("data")
    @click.option("--train-iters", type=int, default=None,
                  help=f"Training iterations [config's train-iters, else {PYTHIA_TRAIN_ITERS}].")
    @click.option("--batch-size", type=int, default=None,
                  help=f"Global batch size in sequences [config's train_batch_size, else {PYTHIA_BATCH_SIZE}].")
    @click.option("--seq-length", type=int, default=None,
                  help=f"Sequence length [config's seq-length, else {PYTHIA_SEQ_LENGTH}].")
    @click.option("--seed", type=int, default=None, help=f"Seed [config's seed, else {PYTHIA_SEED}].")
    @click.option("--config", "configs", multiple=True, type=click.Path(dir_okay=False),
                  help="GPT-NeoX YAML config (repeatable); options override it.")
    @click.option("--index-dir", type=click.Path(file_okay=False), default=None,
                  help="Folder of the cache files [next to the data].")
    @json_option
    @quiet_option
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def job_options(func):
    """``--workers/--executor/--ray-address/--unit-size/--job-dir/--keep-job``: how a
    command that runs as work units (docs/scale.md) spreads them out."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Units run side by side: local worker threads (or processes: "
                          "--local-mode) [all CPUs; 1 with --backend cuda], or Ray CPUs "
                          "of a local Ray cluster."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: this machine; ray: Ray tasks "
                          "(pip install 'pythia-data[ray]')."),
        click.option("--local-mode", type=click.Choice(["thread", "process"]),
                     default=None,
                     help="How --executor local runs units side by side: threads of this "
                          "process (the kernels release the GIL; no worker start-up) or "
                          "worker processes (a unit that crashes or is OOM-killed takes "
                          "only its worker, and is retried) [tokenize, retokenize: thread; "
                          "detokenize and --backend cuda: process]."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="A running Ray cluster (e.g. 10.0.0.1:6379, or auto); without it "
                          "--executor ray starts and stops a local one. Inputs and outputs "
                          "must be on storage every node sees under the same path."),
        click.option("--unit-size", default="64M", show_default=True, metavar="SIZE",
                     help="Input bytes per work unit (64M, 1G, ...). A resumed job must use "
                          "the size it was started with."),
        click.option("--job-dir", default=None, metavar="DIR",
                     help="Where the plan, parts and completion records go "
                          "[OUTPUT.job, removed when the job is done]."),
        click.option("--keep-job", is_flag=True,
                     help="Keep the job folder after the merge (parts and records)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_job_executor(executor: str, workers, ray_address, *, gpu: bool = False,
                      local_mode: str | None = None, default_mode: str = "thread"):
    """The executor for :func:`job_options` values (``gpu``: --backend cuda;
    ``default_mode``: the command's local mode when --local-mode is not given, the faster
    one for it in docs/scale.md's measurements)."""
    from pythia_data.jobs import make_executor

    if executor == "local" and workers is None and gpu:
        workers = 1
    if local_mode is not None and executor != "local":
        raise UsageError("--local-mode needs --executor local")
    if gpu:  # one CUDA context per worker, as before threads were the default
        default_mode = "process"
    return make_executor(executor, workers, ray_address=ray_address,
                         gpus_per_unit=1 if gpu else 0, mode=local_mode or default_mode)
