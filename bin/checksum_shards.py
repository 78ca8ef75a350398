#!/usr/bin/env python3
"""Drop-in for Pythia's ``utils/checksum_shards.py``, running on pythia-data's engine.

    python bin/checksum_shards.py      # checks ./pythia_deduped_pile_idxmaps

Same defaults and output lines as Pythia's script (``Match: NAME - Hashes are the same`` ...),
but: files are hashed in parallel with large reads; the hashes default to
``./utils/shard_hashes.txt`` when it exists, else to the copy built into pythia-data; missing
shards are reported; the exit status is 0 when all match, 1 on any mismatch or missing file,
2 on bad input. Flags let you point it at another folder or manifest.
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    import pythia_data  # noqa: F401
except ImportError:  # running from a checkout
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from pythia_data.errors import PythiaDataError  # noqa: E402
from pythia_data.integrity.verify import checksum_files  # noqa: E402

PYTHIA_DIRECTORY = "./pythia_deduped_pile_idxmaps"
PYTHIA_HASHES = "./utils/shard_hashes.txt"


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the SHA256 of Pythia's data shards")
    parser.add_argument("--directory", "--directory_path", default=PYTHIA_DIRECTORY,
                        help=f"Folder with the files (default {PYTHIA_DIRECTORY})")
    parser.add_argument("--hashes", default=None,
                        help=f"Manifest ('NAME HEX' or 'HEX  NAME'); default {PYTHIA_HASHES} "
                             "if it exists, else Pythia's hashes built into pythia-data")
    parser.add_argument("--jobs", type=int, default=None, help="Parallel hashers (default: all cores)")
    parser.add_argument("--quiet", "-q", action="store_true", help="No progress bar")
    args = parser.parse_args(argv)
    hashes = args.hashes
    if hashes is None and os.path.isfile(PYTHIA_HASHES):
        hashes = PYTHIA_HASHES
    if not os.path.isdir(args.directory):
        print(f"checksum_shards.py: error: no such folder: {args.directory}", file=sys.stderr)
        return 2
    try:
        from pythia_data.cli.shard_cmds import _paths_bytes, byte_progress

        with byte_progress(_paths_bytes([args.directory]), args.quiet, "checksum") as progress:
            report = checksum_files([args.directory], hashes, "sha256", jobs=args.jobs,
                                    progress=progress)
    except PythiaDataError as exc:
        print(f"checksum_shards.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"checksum_shards.py: error: {exc}", file=sys.stderr)
        return 2
    for r in report.results:
        if r.status == "ok":
            print(f"Match: {r.name} - Hashes are the same")
        elif r.status == "mismatch":
            print(f"Mismatch: {r.name} - Hashes differ")
        elif r.status == "missing":
            print(f"Missing: {r.name} - File not found")
        else:
            print(f"No hash found for file: {r.name}")
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    from pythia_data.cli.app import run_script

    return run_script(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
