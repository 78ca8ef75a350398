"""Command-line interface: thin click commands over the library.

Each command lives in its own module and registers itself on :data:`cli` when imported;
``_COMMAND_MODULES`` lists them (add yours there).
"""

from __future__ import annotations

import importlib

from pythia_data.cli.app import cli, main

_COMMAND_MODULES = ["format_cmds", "demo", "order_cmds", "shard_cmds", "batches_cmd"]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"pythia_data.cli.{_name}")

__all__ = ["cli", "main"]
