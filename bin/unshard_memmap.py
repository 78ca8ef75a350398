#!/usr/bin/env python3
"""Drop-in for Pythia's ``utils/unshard_memmap.py``, running on pythia-data's engine.

    python bin/unshard_memmap.py --input_file DIR/BASE-00000-of-00082.bin --num_shards 83 \\
        --output_dir OUT/

Same flags as Pythia's script, but: the shard count is read from the file names, so
``--num_shards`` may be the count (83, as Pythia documents) or the number in the names (82);
it is optional. Every shard is checked (present, numbered, sized) before anything is written;
each shard's SHA256 is verified against Pythia's published hashes while it is copied; the
``.idx`` is copied too; the output appears only when complete; an interrupted run resumes.
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
from pythia_data.shards import find_shards, unshard  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reconstruct a Megatron .bin file from shards")
    parser.add_argument("--input_file", required=True,
                        help="Path to shard 0 (any shard, or the folder holding them, works)")
    parser.add_argument("--num_shards", type=int, default=None,
                        help="Number of shards (the number in the file names + 1); optional, "
                             "either number is accepted")
    parser.add_argument("--output_dir", required=True, help="Folder to save the .bin file into")
    parser.add_argument("--expected", default=None,
                        help="Extra manifest of SHA256s (Pythia's hashes are built in)")
    parser.add_argument("--no_verify", action="store_true", help="Copy without hashing")
    parser.add_argument("--force", action="store_true",
                        help="Replace an existing BASE.bin in --output_dir")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="No progress bar, no notes on stderr")
    args = parser.parse_args(argv)
    try:
        ss = find_shards(args.input_file)
        if args.num_shards is not None and args.num_shards != ss.count:
            if args.num_shards == ss.last_index:
                if not args.quiet:
                    print(f"note: --num_shards {args.num_shards} is the number in the file "
                          f"names; there are {ss.count} shards (0..{ss.last_index}), using "
                          "all of them", file=sys.stderr)
            else:
                print(f"unshard_memmap.py: error: --num_shards {args.num_shards} but the file "
                      f"names say {ss.count} shards (-of-{ss.last_index:05d})", file=sys.stderr)
                return 2
        from pythia_data.cli.shard_cmds import byte_progress

        with byte_progress(ss.total_bytes, args.quiet, "unshard") as progress:
            result = unshard(ss.paths[0], args.output_dir, expected=args.expected,
                             verify=not args.no_verify, overwrite=args.force,
                             progress=progress)
    except PythiaDataError as exc:
        print(f"unshard_memmap.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"unshard_memmap.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unshard_memmap.py: interrupted (rerun to resume)", file=sys.stderr)
        return 130
    for w in result.warnings:
        print(f"unshard_memmap.py: warning: {w}", file=sys.stderr)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
