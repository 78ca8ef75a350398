#!/usr/bin/env python3
"""Drop-in for Pythia's ``utils/batch_viewer.py``: the batches of iterations START..END.

    batch_viewer.py --start_iteration 0 --end_iteration 1000 \\
        --load_path path/to/merged/folder/document --save_path path/to/save/folder/ \\
        [--conf_dir utils/dummy_config.yml]

Reads a preshuffled Pythia dataset (every sequence 2049 tokens, already in training order;
merged ``.bin`` or the shards in place) and writes ``SAVE_PATH/indicies.npy``: an array of
shape ``((END - START + 1) * 1024, 2049)`` in the dataset's dtype -- the same array as
Pythia's viewer after EleutherAI/pythia#187 (``dataset[START*1024 : (END+1)*1024]``); both
ends are inclusive. ``load_path`` may also be given positionally; ``--conf_dir`` is accepted
and ignored, as in Pythia. Without ``--end_iteration`` the range runs to the last iteration.
The file is streamed (memory does not grow with the range) and appears only when complete.
"""

from __future__ import annotations

import argparse
import os
import sys


def _import_library():
    try:
        import pythia_data  # noqa: F401
    except ImportError:  # running from a checkout without installing
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Save the token batches of Pythia training iterations (inclusive range)."
    )
    parser.add_argument(
        "--start_iteration", type=int, default=0, help="First train step to save (default 0)."
    )
    parser.add_argument(
        "--end_iteration",
        type=int,
        default=None,
        help="Last train step to save, inclusive (default: the last one).",
    )
    parser.add_argument(
        "load_path",
        nargs="?",
        default=None,
        help="Preshuffled MMap dataset (prefix, .bin or .idx).",
    )
    parser.add_argument(
        "--load_path",
        dest="load_path_option",
        default=None,
        help="Same as the positional load_path.",
    )
    parser.add_argument(
        "--save_path",
        default="token_indicies",
        help="Folder for indicies.npy (default token_indicies).",
    )
    parser.add_argument("--conf_dir", default=None, help="Accepted and ignored (as in Pythia).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"batch_viewer: ignoring unknown arguments: {' '.join(unknown)}", file=sys.stderr)
    if args.load_path and args.load_path_option and args.load_path != args.load_path_option:
        parser.error("load_path given twice with different values")
    args.load_path = args.load_path or args.load_path_option
    if not args.load_path:
        parser.error("the dataset path (load_path) is required")
    return args


def run(args) -> str:
    from pythia_data.batches import PYTHIA_BATCH_SIZE, PYTHIA_SEQ_LENGTH, BatchReader, write_batches
    from pythia_data.dataset import IndexedDataset
    from pythia_data.errors import OutputError

    with IndexedDataset(args.load_path) as ds:
        reader = BatchReader(ds, None, batch_size=PYTHIA_BATCH_SIZE, seq_length=PYTHIA_SEQ_LENGTH)
        end = reader.num_iterations - 1 if args.end_iteration is None else args.end_iteration
        reader.check_range(args.start_iteration, end)
        try:
            os.makedirs(args.save_path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {args.save_path}: {exc.strerror}") from None
        target = os.path.join(args.save_path, "indicies.npy")
        progress = not args.quiet and sys.stderr.isatty()
        write_batches(reader, args.start_iteration, end, target, "npy", progress=progress)
    return target


def main(argv=None) -> int:
    _import_library()
    from pythia_data.errors import PythiaDataError

    args = parse_args(argv)
    try:
        target = run(args)
    except PythiaDataError as exc:
        print(f"batch_viewer: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batch_viewer: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"batch_viewer: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
