"""The shards layer: find a shard set (the grammar lives in :mod:`pythia_data.format.shardset`),
:func:`unshard` it in one verified, atomic, resumable pass, or :func:`shard` (split) a
``.bin``. This ``__init__`` loads no numpy."""

from pythia_data.format.shardset import (
    DEFAULT_SHARD_SIZE,
    ShardSet,
    find_shards,
    is_sharded_prefix,
    parse_shard_name,
    shard_name,
)
from pythia_data.shards.reassemble import ShardOutcome, UnshardResult, unshard
from pythia_data.shards.split import ShardResult, shard, shard_layout

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ShardOutcome",
    "ShardResult",
    "ShardSet",
    "UnshardResult",
    "find_shards",
    "is_sharded_prefix",
    "parse_shard_name",
    "shard",
    "shard_layout",
    "shard_name",
    "unshard",
]
