"""Where a dataset's files are: prefix, ``.bin``/``.idx`` names, folders and shard sets."""

from __future__ import annotations

import os
from pathlib import Path

from pythia_data.errors import InputError, UsageError
from pythia_data.format.header import strip_suffix
from pythia_data.format.shardset import find_shards, parse_shard_name

__all__ = ["resolve_prefix", "strip_suffix"]


def resolve_prefix(path: str | os.PathLike) -> tuple[str, list[Path]]:
    """Find a dataset's prefix and its data file(s).

    ``path`` may be the prefix, ``PREFIX.bin``, ``PREFIX.idx``, any shard
    ``PREFIX-NNNNN-of-MMMMM.bin``, or a folder holding one dataset (plain or sharded).
    Returns ``(prefix, bin_paths)``; ``bin_paths`` has one entry unless sharded.
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        return _resolve_folder(Path(text))
    prefix = strip_suffix(text)
    match = parse_shard_name(os.path.basename(prefix) + ".bin")
    if match and text.endswith(".bin"):
        prefix = os.path.join(os.path.dirname(prefix), match[0])
        return prefix, _shard_paths(text)
    if os.path.isfile(prefix + ".bin"):
        return prefix, [Path(prefix + ".bin")]
    if not os.path.isfile(prefix + ".idx"):
        raise InputError(f"no dataset at {text}: {prefix}.idx does not exist")
    folder = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    if any((parse_shard_name(name) or ("",))[0] == base for name in _bins(folder)):
        return prefix, _shard_paths(prefix)
    raise InputError(f"missing data file {prefix}.bin (and no shards {prefix}-*-of-*.bin)")


def _bins(folder: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".bin")]
    except OSError as exc:
        raise InputError(f"cannot list {folder}: {exc.strerror}") from None


def _resolve_folder(folder: Path) -> tuple[str, list[Path]]:
    idx = sorted(folder.glob("*.idx"))
    if len(idx) == 1:
        return resolve_prefix(idx[0])
    if len(idx) > 1:
        names = ", ".join(p.name for p in idx[:4])
        raise UsageError(f"{folder} holds several datasets ({names}); name one")
    raise InputError(f"no .idx file in {folder}")


def _shard_paths(path: str) -> list[Path]:
    return list(find_shards(path).paths)
