"""shard (split): cut ``BASE.bin`` into Pythia-named shards, as Pythia's shard_memmap.py did."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pythia_data.errors import InputError, OutputError, UsageError
from pythia_data.format.header import expected_bin_bytes
from pythia_data.format.shardset import DEFAULT_SHARD_SIZE, shard_name
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

    def to_dict(self) -> dict:
        return {
            "shards": [
                {"path": str(p), "size": s, "sha256": d}
                for p, s, d in zip(self.paths, self.sizes, self.digests, strict=True)
            ],
            "manifest": str(self.manifest) if self.manifest else None,
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


def shard(
    bin_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    checksums: bool = True,
    overwrite: bool = False,
    progress=None,
) -> ShardResult:
    """Split ``BASE.bin`` into ``BASE-NNNNN-of-MMMMM.bin`` shards of ``shard_size`` bytes.

    Names follow Pythia exactly (``MMMMM`` = last index). Each shard is written under
    ``NAME.partial`` and renamed when complete. With ``checksums``, each shard's SHA256 is
    computed while it is written and ``BASE.sha256`` (``sha256sum`` style) is written beside
    the shards. The ``.idx`` (if beside the input) is copied to the output folder.
    """
    src = Path(os.fspath(bin_path))
    if not src.name.endswith(".bin"):
        raise UsageError(f"expected a .bin file, got {src}")
    if not src.is_file():
        raise InputError(f"no such file: {src}")
    base = src.name[:-4]
    total = src.stat().st_size
    sizes = shard_layout(total, shard_size)
    last = len(sizes) - 1
    out_dir = Path(os.fspath(output_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    paths = [out_dir / shard_name(base, i, last) for i in range(len(sizes))]
    if not overwrite:
        for p in paths:
            if p.exists():
                raise OutputError(f"{p} already exists (remove it or pass --force)")
    idx_src = src.with_suffix(".idx")
    if idx_src.is_file():
        want = expected_bin_bytes(idx_src)
        if want != total:
            raise InputError(f"{src.name} has {total} bytes but {idx_src.name} expects {want}")
    digests: list[str | None] = []
    cancel = threading.Event()
    offset = 0
    for p, size in zip(paths, sizes, strict=True):
        tmp = p.with_name(p.name + ".partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from exc
        try:
            digest = copy_hashed(src, size, fd, 0, tmp.name, hash_it=checksums, whole=None,
                                 progress=progress, cancel=cancel, src_offset=offset,
                                 check_size=False)
            fsync_fd(fd, tmp.name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, p)
        digests.append(digest)
        offset += size
    manifest = None
    if checksums:
        manifest = out_dir / f"{base}.sha256"
        atomic_write_text(manifest, format_manifest(
            (p.name, d) for p, d in zip(paths, digests, strict=True) if d))
    if idx_src.is_file():
        idx_out = out_dir / idx_src.name
        if idx_out.resolve() != idx_src.resolve():
            copy_file_atomic(idx_src, idx_out)
    fsync_dir(out_dir)
    return ShardResult(paths=paths, sizes=sizes, digests=digests, manifest=manifest)
