"""The one rule for "every file in a folder", shared by ``checksum DIR``, ``checksum
--from-hub DIR`` and ``tokenize DIR``: recursive; hidden files and folders (a name starting
with ``.``, such as a download's ``.pythia-data`` records and our lock files) and our own
partial files (``*.partial``, ``*.partial.json``, huggingface_hub's ``*.incomplete``) are
skipped; symlinks to files are followed, symlinks to folders are not (no cycles); the order
is the sorted order of the paths relative to the folder, component by component."""

from __future__ import annotations

import os
from pathlib import Path

from pythia_data.errors import InputError

__all__ = ["PARTIAL_SUFFIXES", "walk_files"]

PARTIAL_SUFFIXES = (".partial", ".partial.json", ".incomplete")


def walk_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every file below ``folder`` by the rule above."""
    root = Path(os.fspath(folder))
    found: list[Path] = []

    def fail(exc: OSError) -> None:
        raise InputError(f"cannot read folder {exc.filename or root}: "
                         f"{exc.strerror or exc}") from None

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                found.append(path)
    found.sort(key=lambda p: p.relative_to(root).parts)
    return found
