"""The one shard-name grammar, and discovery of a complete shard set.

Pythia's data ships as plain byte slices of ``BASE.bin`` named
``BASE-00000-of-00082.bin`` ... ``BASE-00082-of-00082.bin``: the number after ``of`` is the
index of the *last* shard (count - 1), not the count. Every shard but the last has the same
size (Pythia used 5,000,000,000 bytes); the last one holds the rest. The ``.idx`` is not
sharded and usually lies beside the shards as ``BASE.idx``.

Every module that names, parses or finds shards uses this one (the dataset reader, the
checksum's "missing shard" logic, unshard, split); :func:`find_shards` turns a path (a
shard, the prefix, or a folder) into a validated :class:`ShardSet`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pythia_data.errors import ShardError, UsageError

#: Pythia's shard size in bytes.
DEFAULT_SHARD_SIZE = 5_000_000_000

#: ``BASE-NNNNN-of-MMMMM.bin`` (Pythia pads to 5 digits; more digits are accepted).
SHARD_NAME_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5,})-of-(?P<last>\d{5,})\.bin$")


def shard_name(base: str, index: int, last_index: int) -> str:
    """The file name of shard ``index`` of a set whose last shard is ``last_index``.

    ``base`` is a bare name (no folder). Numbers are zero-padded to 5 digits, as Pythia's
    ``shard_memmap.py`` wrote them.
    """
    if index < 0 or last_index < 0 or index > last_index:
        raise UsageError(f"shard index {index} is out of range 0..{last_index}")
    return f"{base}-{index:05d}-of-{last_index:05d}.bin"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """``(base, index, last_index)`` for a shard file name, or ``None`` if it is not one."""
    m = SHARD_NAME_RE.match(name)
    if m is None:
        return None
    return m.group("base"), int(m.group("index")), int(m.group("last"))


@dataclass(frozen=True)
class ShardSet:
    """A complete, validated set of shards of one ``BASE.bin``.

    ``base`` is the prefix path without suffix (``dir/BASE``, a str); ``paths`` are the shard
    files in order; ``sizes`` their sizes in bytes.
    """

    base: str
    paths: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The bare base name (``BASE``)."""
        return os.path.basename(self.base)

    @property
    def directory(self) -> Path:
        return Path(self.base).parent

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def last_index(self) -> int:
        """The number written after ``of`` in the names (count - 1)."""
        return len(self.paths) - 1

    @property
    def shard_size(self) -> int:
        """The size of every shard but the last."""
        return self.sizes[0]

    @property
    def total_bytes(self) -> int:
        """The size of the reassembled ``BASE.bin``."""
        return int(sum(self.sizes))

    @property
    def offsets(self) -> list[int]:
        """Byte offset of each shard in ``BASE.bin``, plus the total at the end."""
        out = [0]
        for s in self.sizes:
            out.append(out[-1] + int(s))
        return out

    @property
    def idx_path(self) -> Path:
        """Where the (unsharded) index would lie: ``dir/BASE.idx``."""
        return Path(self.base + ".idx")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]


def _scan_folder(folder: Path) -> dict[tuple[str, int], list[tuple[int, Path]]]:
    """Shard files in ``folder`` grouped by ``(base, last_index)``."""
    groups: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError as exc:
        raise ShardError(f"folder not found: {folder}") from exc
    except NotADirectoryError as exc:
        raise ShardError(f"not a folder: {folder}") from exc
    except PermissionError as exc:
        raise ShardError(f"cannot read folder: {folder}") from exc
    for entry in entries:
        parsed = parse_shard_name(entry.name)
        if parsed is None:
            continue
        base, index, last = parsed
        groups[(base, last)].append((index, Path(entry.path)))
    return groups


def _validate(folder: Path, base: str, groups: dict[tuple[str, int], list[tuple[int, Path]]]) -> ShardSet:
    """Check the shards of ``base`` in ``groups`` form one complete set; build the ShardSet."""
    mine = {last: members for (b, last), members in groups.items() if b == base}
    if not mine:
        raise ShardError(f"no shards named {base}-NNNNN-of-MMMMM.bin in {folder}")
    if len(mine) > 1:
        lasts = ", ".join(f"-of-{last:05d}" for last in sorted(mine))
        raise ShardError(
            f"shards of {base} in {folder} disagree on the last shard number ({lasts}); "
            "mixed or mis-numbered shards"
        )
    last, members = next(iter(mine.items()))
    by_index: dict[int, list[Path]] = defaultdict(list)
    for index, path in members:
        by_index[index].append(path)
    dupes = sorted(i for i, ps in by_index.items() if len(ps) > 1)
    if dupes:
        names = ", ".join(p.name for p in by_index[dupes[0]])
        raise ShardError(f"shard {dupes[0]} of {base} appears more than once: {names}")
    extra = sorted(i for i in by_index if i > last)
    if extra:
        raise ShardError(
            f"unexpected shard {by_index[extra[0]][0].name}: its number is beyond the last "
            f"shard {last:05d} named in -of-{last:05d} (mis-numbered or extra shard)"
        )
    missing = [i for i in range(last + 1) if i not in by_index]
    if missing:
        shown = ", ".join(shard_name(base, i, last) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ShardError(
            f"{len(missing)} of {last + 1} shards of {base} missing in {folder}: {shown}{more}"
        )
    paths = [by_index[i][0] for i in range(last + 1)]
    sizes = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as exc:
            raise ShardError(f"cannot read shard {p}: {exc.strerror or exc}") from exc
        if not p.is_file():
            raise ShardError(f"shard is not a regular file: {p}")
        sizes.append(int(st.st_size))
    if len(paths) > 1:
        size0 = sizes[0]
        if size0 == 0:
            raise ShardError(f"shard {paths[0].name} is empty but is not the last shard")
        for p, s in zip(paths[1:-1], sizes[1:-1], strict=True):
            if s != size0:
                raise ShardError(
                    f"shard {p.name} has {s} bytes but shard {paths[0].name} has {size0}; "
                    "every shard but the last must have the same size (short or damaged shard?)"
                )
        if sizes[-1] > size0:
            raise ShardError(
                f"last shard {paths[-1].name} has {sizes[-1]} bytes, more than the "
                f"{size0} of the others"
            )
    return ShardSet(base=str(folder / base), paths=paths, sizes=sizes)


def find_shards(path: str | os.PathLike[str]) -> ShardSet:
    """Find and validate the shard set that ``path`` designates.

    ``path`` may be any shard's path (``dir/BASE-00003-of-00082.bin``), the prefix
    (``dir/BASE``, also accepted as ``dir/BASE.bin`` when that file does not exist), or a
    folder holding exactly one shard set. Raises :class:`ShardError` unless every shard
    ``0..last`` is present exactly once, no shard is numbered beyond the last or named with
    another last number, and every shard but the last has the same size (the last no larger).
    """
    p = Path(os.fspath(path))
    if p.is_dir():
        groups = _scan_folder(p)
        bases = sorted({b for (b, _last) in groups})
        if not bases:
            raise ShardError(f"no shards (NAME-NNNNN-of-MMMMM.bin) in folder {p}")
        if len(bases) > 1:
            raise ShardError(
                f"folder {p} holds shards of several datasets ({', '.join(bases)}); "
                "name one shard or the prefix"
            )
        return _validate(p, bases[0], groups)
    parsed = parse_shard_name(p.name)
    if parsed is not None:
        folder = p.parent
        base = parsed[0]
        if not p.exists():
            raise ShardError(f"shard not found: {p}")
    else:
        folder = p.parent
        base = p.name
        if base.endswith((".bin", ".idx")) and not p.is_file():
            base = base[:-4]
        elif base.endswith((".bin", ".idx")):
            # An existing BASE.bin/.idx: look for its shards beside it.
            base = base[:-4]
    if not base:
        raise ShardError(f"not a shard, prefix or folder: {p}")
    groups = _scan_folder(folder if str(folder) else Path("."))
    return _validate(folder, base, groups)


def is_sharded_prefix(prefix: str | os.PathLike[str]) -> bool:
    """True when ``PREFIX.bin`` is absent but some ``PREFIX-NNNNN-of-MMMMM.bin`` exists."""
    p = Path(os.fspath(prefix))
    if Path(str(p) + ".bin").exists():
        return False
    folder = p.parent
    try:
        names = os.listdir(folder if str(folder) else ".")
    except OSError:
        return False
    for n in names:
        parsed = parse_shard_name(n)
        if parsed is not None and parsed[0] == p.name:
            return True
    return False
