"""The embedded demo: a small deterministic dataset in Pythia's published layout.

``build_demo(DIR)`` writes, without network::

    DIR/source/demo_text_document-0000K-of-0000M.bin   shards (plain byte slices)
    DIR/source/demo_text_document.idx                   the (unsharded) index
    DIR/source/demo_text_document.shard_hashes.txt      SHA256 manifest, Pythia's style

The documents are drawn from a fixed-seed generator, so every run writes the same bytes;
a finished demo folder is reused (checked against its manifest) instead of rewritten.

``build_text_demo(DIR)`` adds a small dataset of real text that every Python installation
has (the docstrings of standard-library modules, in a fixed order), tokenized with the
bundled GPT-NeoX-20B tokenizer exactly as GPT-NeoX's preprocessing does, and dumps one
iteration of its training order as text (``DIR/batches/text_iteration_0.txt``).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import shlex
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pythia_data.batches import BatchReader, write_batches
from pythia_data.dataset import DatasetBuilder, IndexedDataset
from pythia_data.errors import PythiaDataError, VerificationError
from pythia_data.format.shardset import find_shards, shard_name
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import Manifest
from pythia_data.integrity.verify import checksum_files
from pythia_data.order import PYTHIA_SEED, PYTHIA_SEQ_LENGTH, OrderParams, TrainingOrder
from pythia_data.shards import unshard
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import tokenize_documents

BASE = "demo_text_document"
NUM_DOCUMENTS = 3000
SHARD_BYTES = 1_000_000
VOCAB_SIZE = 50277  # GPT-NeoX-20B's vocabulary: uint16 tokens, as Pythia's data
EOD = 0
SEED = 20230403

# The demo "training run": Pythia's sequence length, a tiny batch and run length.
DEMO_TRAIN_ITERS = 100
DEMO_BATCH_SIZE = 8
DEMO_SEQ_LENGTH = PYTHIA_SEQ_LENGTH
DEMO_SEED = PYTHIA_SEED


@dataclass
class DemoFiles:
    folder: Path
    source: Path
    prefix: Path  # source/BASE (sharded .bin, unsharded .idx)
    manifest: Path
    shards: list[Path]
    reused: bool


def demo_documents(num_documents: int = NUM_DOCUMENTS, seed: int = SEED):
    """Yield the demo's documents: varied lengths (1 to ~6,000 tokens), each ending in EOD."""
    rng = np.random.RandomState(seed)
    lengths = np.clip(rng.lognormal(mean=5.6, sigma=1.0, size=num_documents), 1, 6000)
    for length in lengths.astype(np.int64):
        body = rng.randint(1, VOCAB_SIZE, size=int(length) - 1).astype(np.uint16)
        yield np.concatenate([body, np.array([EOD], dtype=np.uint16)])


def _existing(folder: Path) -> DemoFiles | None:
    """The demo files under ``folder`` when every one matches its manifest, else None
    (read with the package's own shard-set, manifest and hashing readers)."""
    source = folder / "source"
    manifest = source / f"{BASE}.shard_hashes.txt"
    if not manifest.is_file():
        return None
    try:
        expected = Manifest.load(manifest)
        shards = find_shards(source / BASE)
    except PythiaDataError:
        return None
    for path in [*shards.paths, source / f"{BASE}.idx"]:
        entry = expected.get(path.name, "sha256")
        try:
            if entry is None or hash_file(path, "sha256") != entry.digest:
                return None
        except OSError:
            return None
    return DemoFiles(folder, source, source / BASE, manifest, list(shards.paths), reused=True)


def build_demo(folder: str | os.PathLike = "pythia-demo", force: bool = False) -> DemoFiles:
    """Create (or reuse, when intact and not ``force``) the demo dataset under ``folder``."""
    folder = Path(folder)
    found = None if force else _existing(folder)
    if found is not None:
        return found
    source = folder / "source"
    work = folder / "source.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prefix = work / BASE
    with DatasetBuilder(prefix, np.uint16) as builder:
        for doc in demo_documents():
            builder.add_document(doc)
    bin_path = prefix.with_suffix(".bin")
    total = bin_path.stat().st_size
    last = (total - 1) // SHARD_BYTES
    lines = []
    with open(bin_path, "rb") as f:
        for k in range(last + 1):
            name = shard_name(BASE, k, last)
            data = f.read(SHARD_BYTES)
            (work / name).write_bytes(data)
            lines.append(f"{name} {hashlib.sha256(data).hexdigest()}")
    whole = hash_file(bin_path, "sha256")
    lines.append(f"{BASE}.idx {hash_file(prefix.with_suffix('.idx'), 'sha256')}")
    lines.append(f"{BASE}.bin {whole}")
    bin_path.unlink()  # the unsharded file is what `unshard` rebuilds
    (work / f"{BASE}.shard_hashes.txt").write_text("\n".join(lines) + "\n")
    shutil.rmtree(source, ignore_errors=True)
    os.replace(work, source)
    shards = list(find_shards(source / BASE).paths)
    return DemoFiles(
        folder, source, source / BASE, source / f"{BASE}.shard_hashes.txt", shards, reused=False
    )


# --------------------------------------------------------------------------- the main job


# --------------------------------------------------------------------------- real text

TEXT_BASE = "stdlib_text_document"
TEXT_DOCUMENTS = 400
TEXT_TRAIN_ITERS = 10
TEXT_BATCH_SIZE = 4
TEXT_SEQ_LENGTH = 128
STDLIB_MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions",
    "functools", "glob", "gzip", "heapq", "hmac", "html", "inspect", "io", "ipaddress",
    "itertools", "json", "keyword", "logging", "operator", "os", "pathlib", "pickle", "pprint",
    "queue", "random", "re", "secrets", "shlex", "shutil", "statistics", "string", "struct",
    "subprocess", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize",
    "traceback", "types", "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile",
)


def stdlib_documents(limit: int = TEXT_DOCUMENTS) -> list[str]:
    """Up to ``limit`` docstrings of standard-library modules: each module's own, then its
    public functions' and classes' (sorted by name), modules in a fixed order; duplicates
    dropped. The same list on every run of one Python version, no files or network needed."""
    out: list[str] = []
    seen: set[str] = set()

    def add(doc) -> None:
        if isinstance(doc, str):
            text = inspect.cleandoc(doc)
            if text.strip() and text not in seen:
                seen.add(text)
                out.append(text)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules and attributes
        for name in STDLIB_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            add(module.__doc__)
            for attr in sorted(vars(module)):
                if attr.startswith("_"):
                    continue
                obj = vars(module)[attr]
                if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(
                        obj, "__module__", None) == module.__name__:
                    add(obj.__doc__)
                if len(out) >= limit:
                    return out
    return out


def demo_tokenizer():
    """The bundled GPT-NeoX-20B tokenizer: the cpu backend, else the hf one."""
    try:
        return load_tokenizer(backend="cpu")
    except (PythiaDataError, ImportError, OSError) as exc:
        try:
            return load_tokenizer(backend="hf")
        except PythiaDataError:
            raise exc from None


@dataclass
class TextDemo:
    prefix: Path
    summary: dict  # tokenize_documents' summary
    tokenizer: object
    order: object
    text_path: Path
    row_text: str  # iteration 0, row 0, decoded
    row_tokens: np.ndarray
    command: str  # the pythia-data command line that dumps the same text


def build_text_demo(folder: str | os.PathLike = "pythia-demo", force: bool = False) -> TextDemo:
    """Tokenize the standard library's docstrings into ``folder/text``, build a tiny
    training order over them (``force``: rebuilt even when a cache is there) and dump
    iteration 0 as text."""
    folder = Path(folder)
    text_dir = folder / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    tok = demo_tokenizer()
    prefix = text_dir / TEXT_BASE
    summary = tokenize_documents(stdlib_documents(), tok, prefix, append_eod=True)
    params = OrderParams(train_iters=TEXT_TRAIN_ITERS, batch_size=TEXT_BATCH_SIZE,
                         seq_length=TEXT_SEQ_LENGTH, seed=DEMO_SEED)
    out_dir = folder / "batches"
    out_dir.mkdir(exist_ok=True)
    text_path = out_dir / "text_iteration_0.txt"
    with IndexedDataset(prefix) as ds:
        order = TrainingOrder.build(ds, params, index_dir=text_dir, use_cache=not force)
        reader = BatchReader(ds, order)
        write_batches(reader, 0, 0, text_path, "text", decode=tok.decode)
        row = reader[0][0].copy()
    q = shlex.quote
    command = (f"pythia-data batches {q(str(prefix))} --train-iters {TEXT_TRAIN_ITERS} "
               f"--batch-size {TEXT_BATCH_SIZE} --seq-length {TEXT_SEQ_LENGTH} --seed "
               f"{DEMO_SEED} --index-dir {q(str(text_dir))} -s 0 -o {q(str(text_path))} "
               f"--tokenizer bundled --backend {tok.backend} --force")
    return TextDemo(prefix, summary, tok, order, text_path, tok.decode(row), row, command)


@dataclass
class DemoRun:
    files: DemoFiles
    checksum: object  # ChecksumReport
    unshard: object  # UnshardResult
    merged_prefix: Path
    stats: dict
    order: object  # TrainingOrder
    batches_path: Path
    batches: np.ndarray  # iterations 0..1, read back from batches_path
    batch_summary: dict
    shards_agree: bool  # the same batches read from the shards in place
    located: list[dict]  # where the first document of iteration 0 was trained
    commands: dict  # step -> the equivalent pythia-data command line
    text: TextDemo | None = None  # the real-text dataset and one row of it as text


def demo_commands(files: DemoFiles, document: int | None = None) -> dict[str, str]:
    """The ``pythia-data`` command line equivalent to each step the demo runs (the order
    flags matter: Pythia's defaults, 143000 x 1024 samples, need far more data)."""
    q = shlex.quote
    folder = files.folder
    merged = folder / "merged" / BASE
    order = (f"--train-iters {DEMO_TRAIN_ITERS} --batch-size {DEMO_BATCH_SIZE} "
             f"--seq-length {DEMO_SEQ_LENGTH} --seed {DEMO_SEED} --index-dir "
             f"{q(str(folder / 'index'))}")
    out = folder / "batches" / "iterations_0-1.npy"
    commands = {
        "checksum": (f"pythia-data checksum -c {q(str(files.manifest))} "
                     + " ".join(q(str(p)) for p in [*files.shards, files.prefix.with_suffix(".idx")])),
        "unshard": (f"pythia-data unshard {q(str(files.shards[0]))} -o "
                    f"{q(str(folder / 'merged'))} -c {q(str(files.manifest))} --force"),
        "info": f"pythia-data info {q(str(merged))}",
        "order": f"pythia-data order build {q(str(merged))} {order}",
        "batches": (f"pythia-data batches {q(str(merged))} {order} -s 0 -e 1 -o {q(str(out))} "
                    "--force"),
    }
    if document is not None:
        commands["locate"] = f"pythia-data locate {q(str(merged))} {order} -d {document}"
    return commands


def run_demo(folder: str | os.PathLike = "pythia-demo", progress=None,
             force: bool = False) -> DemoRun:
    """Build (or reuse) the demo, then the whole job: verify the shards against their
    manifest, unshard them (verified, into ``folder/merged``), describe the dataset,
    reconstruct GPT-NeoX's training order (cache files in ``folder/index``) and dump
    iterations 0..1 to ``folder/batches/iterations_0-1.npy``; then the real-text part
    (:func:`build_text_demo`). Idempotent: the unshard output is rewritten, a checked order
    cache is reused; ``force`` rebuilds the dataset and the order caches (the remedy for a
    damaged cache)."""

    files = build_demo(folder, force=force)
    report = checksum_files(
        [*files.shards, files.prefix.with_suffix(".idx")], expected=files.manifest, jobs=2
    )
    if not report.ok:
        raise VerificationError(f"demo shards do not match their manifest: {report.summary()}")
    merged_dir = files.folder / "merged"
    merged_dir.mkdir(exist_ok=True)
    result = unshard(files.shards[0], merged_dir, expected=files.manifest, overwrite=True,
                     progress=progress)
    merged = merged_dir / BASE
    params = OrderParams(train_iters=DEMO_TRAIN_ITERS, batch_size=DEMO_BATCH_SIZE,
                         seq_length=DEMO_SEQ_LENGTH, seed=DEMO_SEED)
    index_dir = files.folder / "index"
    index_dir.mkdir(exist_ok=True)
    out_dir = files.folder / "batches"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / "iterations_0-1.npy"
    with IndexedDataset(merged) as ds:
        stats = ds.stats()
        order = TrainingOrder.build(ds, params, index_dir=index_dir, use_cache=not force)
        summary = write_batches(BatchReader(ds, order), 0, 1, out)
        dumped = np.load(out)
        first = _first_document(order)
        located = order.locate(first)
    with IndexedDataset(files.prefix) as sharded:
        in_place = np.concatenate(list(BatchReader(sharded, order).iter_batches(0, 1)))
        agree = bool(np.array_equal(in_place, dumped))
    text = build_text_demo(files.folder, force=force)
    return DemoRun(files, report, result, merged, stats, order, out, dumped, summary, agree,
                   located, demo_commands(files, first), text)


def _first_document(order) -> int:
    """The document whose tokens open sample 0 of the training order."""
    start_pos = int(order.sample_positions([0])[0][0])
    return int(order.doc_idx[start_pos])
