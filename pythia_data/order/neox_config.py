"""Read the training-order settings from GPT-NeoX YAML config files.

GPT-NeoX configs are YAML (a superset of the JSON-with-comments style EleutherAI uses:
``#`` comments, trailing commas, ``True``/``true``). Keys may be spelled with ``-`` or
``_``; GPT-NeoX treats both the same. Several files may be given; like GPT-NeoX's
launcher, a key set in two files is an error.

Only what the training order depends on is read: ``train-iters``, ``seq-length``, ``seed``
and, when a file has it, ``train_batch_size``. A key the files do not set is ``None`` here:
GPT-NeoX v1.0 has no default ``seq-length`` (it is unset) and its ``seed`` defaults to 1234;
the values used in their place are Pythia's, whose one home is :mod:`.params`. The global batch size is usually not in the file (it is
``train_micro_batch_size_per_gpu`` x gradient accumulation x data-parallel ranks), so
callers pass it; Pythia's is 1024.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from pythia_data.errors import ConfigError


@dataclass(frozen=True)
class NeoxConfig:
    """The order-relevant settings of one or more GPT-NeoX config files."""

    train_iters: int | None
    seq_length: int | None
    seed: int | None
    train_batch_size: int | None = None
    train_data_paths: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())


def _norm(key) -> str:
    return str(key).replace("-", "_")


def _read_one(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a GPT-NeoX config must be a mapping of keys to values")
    out: dict = {}
    for key, value in data.items():
        name = _norm(key)
        if name in out:
            raise ConfigError(f"{path}: key {key!r} is given twice ('-' and '_' spellings)")
        out[name] = value
    return out


def _int_value(merged: dict, key: str, path_of: dict, minimum: int) -> int | None:
    if key not in merged:
        return None
    value = merged[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path_of[key]}: {key.replace('_', '-')} must be an integer, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{path_of[key]}: {key.replace('_', '-')} must be >= {minimum}, not {value}")
    return value


def load_neox_config(paths: str | os.PathLike | list | tuple) -> NeoxConfig:
    """Read one GPT-NeoX config file (or several, merged) -> :class:`NeoxConfig`.

    Raises :class:`ConfigError` for unreadable files, bad values, keys repeated across
    files, or a setup whose order this toolkit does not reproduce (``data-path`` with a
    train/valid/test split, or several weighted training datasets).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ConfigError("no config file given")
    merged: dict = {}
    path_of: dict = {}
    for path in paths:
        for key, value in _read_one(path).items():
            if key in merged:
                raise ConfigError(f"key {key.replace('_', '-')!r} is set in both {path_of[key]} and {path}")
            merged[key] = value
            path_of[key] = path

    train_iters = _int_value(merged, "train_iters", path_of, 1)
    seq_length = _int_value(merged, "seq_length", path_of, 1)
    seed = _int_value(merged, "seed", path_of, 0)
    batch = _int_value(merged, "train_batch_size", path_of, 1)
    if seed is not None and seed > 0xFFFFFFFF:
        raise ConfigError(f"{path_of['seed']}: seed must be below 2**32, not {seed}")

    train_paths = merged.get("train_data_paths") or ()
    if isinstance(train_paths, str):
        train_paths = (train_paths,)
    if not isinstance(train_paths, (list, tuple)) or not all(isinstance(p, str) for p in train_paths):
        raise ConfigError(f"{path_of.get('train_data_paths')}: train-data-paths must be a list of paths")
    if len(train_paths) > 1:
        raise ConfigError(
            f"{path_of['train_data_paths']}: {len(train_paths)} weighted training datasets; "
            "only a single train-data-paths entry is supported"
        )
    if not train_paths and merged.get("data_path"):
        raise ConfigError(
            f"{path_of['data_path']}: data-path (one dataset split into train/valid/test) is "
            "not supported; GPT-NeoX names and sizes that order differently (use train-data-paths)"
        )
    return NeoxConfig(
        train_iters=train_iters,
        seq_length=seq_length,
        seed=seed,
        train_batch_size=batch,
        train_data_paths=tuple(train_paths),
        sources=tuple(paths),
    )
