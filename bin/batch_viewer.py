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
``--batch_size`` / ``--seq_length`` read data of another shape (default 1024 x 2048).
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
    parser.add_argument("--batch_size", type=int, default=1024,
                        help="Sequences per iteration (default 1024, Pythia's global batch).")
    parser.add_argument("--seq_length", type=int, default=2048,
                        help="Sequence length; each sequence holds seq_length + 1 tokens "
                             "(default 2048).")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="No progress bar, no notes on stderr.")
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.quiet:
        print(f"batch_viewer: ignoring unknown arguments: {' '.join(unknown)}", file=sys.stderr)
    if args.load_path and args.load_path_option and args.load_path != args.load_path_option:
        parser.error("load_path given twice with different values")
    args.load_path = args.load_path or args.load_path_option
    if not args.load_path:
        parser.error("the dataset path (load_path) is required")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, not {args.batch_size}")
    if args.seq_length < 1:
        parser.error(f"--seq_length must be at least 1, not {args.seq_length}")
    return args


def _check_range(args, num_sequences: int, num_iterations: int) -> int:
    """The end iteration, or one clear UsageError naming what the data holds."""
    from pythia_data.errors import UsageError

    batch = args.batch_size
    if num_iterations < 1:
        hint = "" if batch != 1024 else "; pass --batch_size for data of another batch size"
        raise UsageError(f"{args.load_path} holds {num_sequences} sequences: not one whole "
                         f"iteration of {batch}{hint}")
    last = num_iterations - 1
    end = last if args.end_iteration is None else args.end_iteration
    if args.start_iteration < 0 or end < 0:
        raise UsageError(f"iterations must be >= 0 (got --start_iteration "
                         f"{args.start_iteration}, --end_iteration {end})")
    if args.start_iteration > last:
        raise UsageError(f"start iteration {args.start_iteration} is past the end: "
                         f"{args.load_path} holds {num_iterations} iterations of {batch} "
                         f"(0..{last})")
    if args.start_iteration > end:
        raise UsageError(f"start iteration {args.start_iteration} is after end iteration {end}")
    if end > last:
        raise UsageError(f"iteration {end} is past the end: {args.load_path} holds "
                         f"{num_iterations} iterations of {batch} (0..{last})")
    return end


def run(args) -> str:
    from pythia_data.batches import BatchReader, write_batches
    from pythia_data.dataset import IndexedDataset
    from pythia_data.errors import OutputError

    with IndexedDataset(args.load_path) as ds:
        reader = BatchReader(ds, None, batch_size=args.batch_size, seq_length=args.seq_length)
        end = _check_range(args, len(ds), reader.num_iterations)
        try:
            os.makedirs(args.save_path, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {args.save_path}: {exc.strerror}") from None
        target = os.path.join(args.save_path, "indicies.npy")
        progress = None
        if not args.quiet:
            from pythia_data.cli.options import progress_factory

            progress = progress_factory(False)
        write_batches(reader, args.start_iteration, end, target, "npy", progress=progress)
    return target


def _main(argv=None) -> int:
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


def main(argv=None) -> int:
    _import_library()
    from pythia_data.cli.app import run_script

    return run_script(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
