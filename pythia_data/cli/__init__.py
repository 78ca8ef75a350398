"""Command-line interface: thin click commands over the library.

Each command lives in its own module and registers itself on :data:`cli` when imported.
The modules are imported only when their command is invoked (or when ``--help`` lists
them), so ``pythia-data checksum`` starts without loading numpy or numba: ``COMMANDS``
maps each command name to its module (add yours there).
"""

from __future__ import annotations

from pythia_data.cli.app import cli, console_main, main

COMMANDS = {
    "info": "format_cmds",
    "merge": "format_cmds",
    "demo": "demo",
    "order": "order_cmds",
    "locate": "order_cmds",
    "checksum": "shard_cmds",
    "unshard": "shard_cmds",
    "shard": "shard_cmds",
    "batches": "batches_cmd",
    "download": "hub_cmds",
    "tokenize": "tokenize_cmds",
    "detokenize": "tokenize_cmds",
    "retokenize": "tokenize_cmds",
    "find": "find_cmds",
    "stats": "find_cmds",
}

cli.lazy_commands.update(COMMANDS)

__all__ = ["COMMANDS", "cli", "console_main", "main"]
