"""A deterministic, offline, multilingual text corpus assembled from files on this machine.

Used by ``bin/bench-tokenize`` (speed and exactness) and by the exactness tests (a small
slice). Sources, each capped at a share of the target size, files in sorted order:

  gettext   translated messages of every ``.mo`` catalog under /usr/share/locale and
            /usr/share/vim (one document per catalog; ~100 languages: CJK, Arabic, Hebrew,
            Cyrillic, Indic, Thai, Greek ...), interleaved round-robin over languages
  python    Python standard library sources (code: indentation, space runs, docstrings)
  doc       /usr/share/doc text files (README, changelogs, copyright; .gz decompressed)
  man       man pages (roff source, .gz decompressed)
  i18n      glibc locale definitions (/usr/share/i18n/locales)

Files that are not UTF-8 text are skipped; documents longer than 256 KiB are cut at a line
boundary into several. The corpus is written once as JSON lines (``{"source", "text"}``)
into a cache folder and re-read afterwards.
"""

from __future__ import annotations

import gettext
import gzip
import json
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SOURCES", "build_corpus", "load_corpus", "corpus_documents", "default_cache"]

MAX_DOC = 256 * 1024
SHARES = {"gettext": 0.35, "python": 0.25, "doc": 0.20, "man": 0.12, "i18n": 0.08}


def default_cache() -> Path:
    base = os.environ.get("PYTHIA_DATA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pythia-data"
    )
    return Path(base) / "bench-tokenize"


def _files(root: str, suffixes: tuple[str, ...]) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(suffixes):
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    out.append(path)
    return out


def _text(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        if b"\x00" in raw:
            return None
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def _gettext_docs() -> Iterator[str]:
    catalogs = _files("/usr/share/locale", (".mo",)) + _files("/usr/share/vim", (".mo",))
    by_lang: dict[str, list[Path]] = {}
    for path in catalogs:
        parts = path.parts
        lang = parts[parts.index("LC_MESSAGES") - 1] if "LC_MESSAGES" in parts else "?"
        by_lang.setdefault(lang, []).append(path)
    queues = [by_lang[k] for k in sorted(by_lang)]
    i = 0
    while any(queues):
        for q in queues:
            if len(q) > i:
                path = q[i]
                try:
                    with open(path, "rb") as fh:
                        cat = gettext.GNUTranslations(fh)._catalog  # noqa: SLF001
                except Exception:  # noqa: BLE001 - a broken catalog is skipped
                    continue
                msgs = []
                for key in sorted(cat, key=lambda k: repr(k)):
                    value = cat[key]
                    if isinstance(value, str) and value and key:
                        msgs.append(value)
                if msgs:
                    yield "\n".join(msgs)
        i += 1
        if all(len(q) <= i for q in queues):
            break


def _plain(root: str, suffixes: tuple[str, ...]) -> Iterator[str]:
    for path in _files(root, suffixes):
        text = _text(path)
        if text:
            yield text


def _python_docs() -> Iterator[str]:
    root = sysconfig.get_paths()["stdlib"]
    for path in _files(root, (".py",)):
        if "site-packages" in path.parts:
            continue
        text = _text(path)
        if text:
            yield text


SOURCES = {
    "gettext": _gettext_docs,
    "python": _python_docs,
    "doc": lambda: _plain("/usr/share/doc", (".txt", ".md", ".gz", "copyright", "README")),
    "man": lambda: _plain("/usr/share/man", (".gz",)),
    "i18n": lambda: _plain("/usr/share/i18n/locales", ("",)),
}


def _cut(text: str) -> Iterator[str]:
    while len(text.encode("utf-8")) > MAX_DOC:
        cut = text.rfind("\n", 0, MAX_DOC // 4)
        if cut <= 0:
            cut = MAX_DOC // 4
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def corpus_documents(target_bytes: int) -> Iterator[tuple[str, str]]:
    """(source, text) pairs, deterministic, about ``target_bytes`` UTF-8 bytes in all."""
    for source, share in SHARES.items():
        budget = int(target_bytes * share)
        used = 0
        for text in SOURCES[source]():
            for piece in _cut(text):
                size = len(piece.encode("utf-8"))
                yield source, piece
                used += size
                if used >= budget:
                    break
            if used >= budget:
                break


def build_corpus(folder: str | os.PathLike | None = None, target_mb: float = 48) -> Path:
    """Write (once) and return the corpus file ``corpus-<target_mb>MB.jsonl`` in ``folder``."""
    folder = Path(folder) if folder is not None else default_cache()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"corpus-{target_mb:g}MB.jsonl"
    if path.exists():
        return path
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    counts: dict[str, list[int]] = {}
    with open(tmp, "w", encoding="utf-8") as fh:
        for source, text in corpus_documents(int(target_mb * 1e6)):
            fh.write(json.dumps({"source": source, "text": text}, ensure_ascii=False) + "\n")
            c = counts.setdefault(source, [0, 0])
            c[0] += 1
            c[1] += len(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    (folder / (path.stem + ".summary.json")).write_text(json.dumps(counts, indent=1))
    return path


def load_corpus(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(texts, sources) of a corpus file."""
    texts, sources = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            texts.append(rec["text"])
            sources.append(rec["source"])
    return texts, sources
