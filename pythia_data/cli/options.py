"""Shared CLI pieces: option decorators and progress bars (tqdm lives only in cli/)."""

from __future__ import annotations

import contextlib
import functools
import sys

import click

__all__ = ["byte_progress", "order_options", "progress_factory", "show_progress"]


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


def order_options(func):
    """DATA plus the options that define the order (shared by all three commands)."""

    @click.argument("data")
    @click.option("--train-iters", type=int, default=None,
                  help="Training iterations [config's train-iters, else 143000].")
    @click.option("--batch-size", type=int, default=None,
                  help="Global batch size in sequences [config's train_batch_size, else 1024].")
    @click.option("--seq-length", type=int, default=None,
                  help="Sequence length [config's seq-length, else 2048].")
    @click.option("--seed", type=int, default=None, help="Seed [config's seed, else 1234].")
    @click.option("--config", "configs", multiple=True, type=click.Path(dir_okay=False),
                  help="GPT-NeoX YAML config (repeatable); options override it.")
    @click.option("--index-dir", type=click.Path(file_okay=False), default=None,
                  help="Folder of the cache files [next to the data].")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper
