"""shard (split): cut ``BASE.bin`` into Pythia-named shards, as Pythia's shard_memmap.py did."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from pythia_data.errors import InputError, OutputError, OutputExistsError, UsageError
from pythia_data.format.header import expected_bin_bytes
from pythia_data.format.shardset import DEFAULT_SHARD_SIZE, shard_name
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import format_manifest
from pythia_data.io.atomic import atomic_write_text, fsync_dir
from pythia_data.io.copy import copy_file_atomic, copy_hashed, fsync_fd


@dataclass
class ShardResult:
    """What :func:`shard` wrote: the shard paths, sizes and (if hashed) SHA256s."""

    paths: list[Path]
    sizes: list[int]
    digests: list[str | None]
    manifest: Path | None = None
    resumed: int = 0

    def to_dict(self) -> dict:
        return {
            "shards": [
                {"path": str(p), "size": s, "sha256": d}
                for p, s, d in zip(self.paths, self.sizes, self.digests, strict=True)
            ],
            "manifest": str(self.manifest) if self.manifest else None,
            "resumed": self.resumed,
        }


def shard_layout(total_bytes: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[int]:
    """Shard sizes Pythia's ``shard_memmap.py`` produces for a file of ``total_bytes``.

    The last index is ``total_bytes // shard_size``, so when the size is an exact multiple
    the last shard is empty -- kept for name compatibility with Pythia's scripts.
    """
    if shard_size <= 0:
        raise UsageError(f"shard size must be positive, got {shard_size}")
    if total_bytes < 0:
        raise UsageError(f"file size must not be negative, got {total_bytes}")
    last = total_bytes // shard_size
    return [shard_size] * last + [total_bytes - last * shard_size]


#: The most shards one ``shard`` run writes: the names have five digits (``-99999``), and
#: a tiny ``--shard-size`` would otherwise start millions of files.
MAX_SHARDS = 10_000

STATE_FORMAT = "pythia-data-shard-state"
STATE_VERSION = 1


def _state_path(out_dir: Path, base: str) -> Path:
    return out_dir / f"{base}.shards.partial.json"


def _load_state(path: Path, want: dict) -> dict[int, dict]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(state, dict) or any(state.get(k) != v for k, v in want.items()):
        return {}
    done = state.get("done")
    if not isinstance(done, dict):
        return {}
    out = {}
    for k, rec in done.items():
        try:
            out[int(k)] = dict(rec)
        except (TypeError, ValueError):
            return {}
    return out


def _save_state(path: Path, want: dict, done: dict[int, dict]) -> None:
    state = dict(want, done={str(i): done[i] for i in sorted(done)})
    atomic_write_text(path, json.dumps(state, indent=1))


def shard(
    bin_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    checksums: bool = True,
    overwrite: bool = False,
    progress=None,
    max_shards: int = MAX_SHARDS,
) -> ShardResult:
    """Split ``BASE.bin`` into ``BASE-NNNNN-of-MMMMM.bin`` shards of ``shard_size`` bytes.

    Names follow Pythia exactly (``MMMMM`` = last index). The set appears at once: every
    shard is written and fsynced as ``NAME.partial``, and only when all are complete (and
    ``BASE.sha256`` and the ``.idx`` are in place) are they renamed to their final names.
    Resumable: completed shards are recorded in ``BASE.shards.partial.json``; a rerun of
    the same command (same input, unchanged, same shard size) re-hashes them, keeps those
    that still match, and writes only the rest. With ``checksums``, each shard's SHA256 is
    computed while it is written and ``BASE.sha256`` (``sha256sum`` style) is written
    beside the shards. The ``.idx`` (if beside the input) is copied to the output folder.
    More than ``max_shards`` shards is a :class:`UsageError` (raise ``shard_size``).
    """
    src = Path(os.fspath(bin_path))
    if not src.name.endswith(".bin"):
        raise UsageError(f"expected a .bin file, got {src}")
    if not src.is_file():
        raise InputError(f"no such file: {src}")
    base = src.name[:-4]
    st = src.stat()
    total = st.st_size
    if shard_size <= 0:
        raise UsageError(f"shard size must be positive, got {shard_size}")
    count = total // shard_size + 1
    if count > max_shards:
        least = -(-total // max_shards)
        raise UsageError(
            f"--shard-size {shard_size} would cut {src.name} ({total} bytes) into {count} "
            f"shards, more than {max_shards}; use a shard size of at least {least} bytes"
        )
    sizes = shard_layout(total, shard_size)
    last = len(sizes) - 1
    out_dir = Path(os.fspath(output_dir))
    idx_src = src.with_suffix(".idx")
    if idx_src.is_file():
        want = expected_bin_bytes(idx_src)
        if want != total:
            raise InputError(f"{src.name} has {total} bytes but {idx_src.name} expects {want}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    paths = [out_dir / shard_name(base, i, last) for i in range(len(sizes))]
    tmps = [p.with_name(p.name + ".partial") for p in paths]

    # -- resume: completed shards of an earlier run of the same command, re-verified
    state_path = _state_path(out_dir, base)
    want = {"format": STATE_FORMAT, "version": STATE_VERSION, "source": src.name,
            "source_size": total, "source_mtime_ns": st.st_mtime_ns,
            "shard_size": shard_size, "checksums": checksums}
    done: dict[int, dict] = {}
    for i, rec in _load_state(state_path, want).items():
        if not 0 <= i < len(sizes) or rec.get("size") != sizes[i]:
            continue
        where = tmps[i] if tmps[i].is_file() else paths[i] if paths[i].is_file() else None
        if where is None or where.stat().st_size != sizes[i]:
            continue
        if checksums and hash_file(where, "sha256") != rec.get("sha256"):
            continue
        done[i] = dict(rec, at=where.name)
    resumed = len(done)
    if not overwrite:
        for i, p in enumerate(paths):
            if p.exists() and not (i in done and done[i]["at"] == p.name):
                raise OutputExistsError(p)
    need = total - sum(sizes[i] for i in done)
    try:
        free = shutil.disk_usage(out_dir).free
    except OSError:
        free = None
    if free is not None and need > free:
        raise OutputError(
            f"not enough space in {out_dir}: the shards of {src.name} need {need} more "
            f"bytes, {free} free"
        )

    cancel = threading.Event()
    offset = 0
    for i, (tmp, size) in enumerate(zip(tmps, sizes, strict=True)):
        if i in done:
            offset += size
            continue
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from exc
        try:
            digest = copy_hashed(src, size, fd, 0, tmp.name, hash_it=checksums, whole=None,
                                 progress=progress, cancel=cancel, src_offset=offset,
                                 check_size=False, writeback=True)
            fsync_fd(fd, tmp.name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        done[i] = {"size": size, "sha256": digest, "at": tmp.name}
        _save_state(state_path, want, done)
        offset += size

    digests = [done[i].get("sha256") for i in range(len(sizes))]
    manifest = None
    if checksums:
        manifest = out_dir / f"{base}.sha256"
        items = [(p.name, d) for p, d in zip(paths, digests, strict=True) if d]
        if idx_src.is_file():  # so that unshard checks the index too
            items.append((idx_src.name, hash_file(idx_src, "sha256")))
        atomic_write_text(manifest, format_manifest(items))
    if idx_src.is_file():
        idx_out = out_dir / idx_src.name
        if idx_out.resolve() != idx_src.resolve():
            copy_file_atomic(idx_src, idx_out)
    # -- the set appears: every shard is complete and fsynced, rename them all
    for i, p in enumerate(paths):
        if done[i]["at"] != p.name:
            try:
                os.replace(tmps[i], p)
            except OSError as exc:
                raise OutputError(f"cannot rename {tmps[i]} to {p}: {exc.strerror or exc}; "
                                  "rerun the same command to finish") from exc
    fsync_dir(out_dir)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    fsync_dir(out_dir)
    return ShardResult(paths=paths, sizes=sizes, digests=digests, manifest=manifest,
                       resumed=resumed)
