"""Finding and reading a ``tokenizer.json``.

``spec`` may be ``None`` (the bundled GPT-NeoX-20B tokenizer, ``pythia_data/data/
20B_tokenizer.json``, Apache-2.0, works offline), a path to a ``tokenizer.json`` or to a
folder holding one, or a Hugging Face hub model id (``org/name``): its ``tokenizer.json`` is
fetched once with ``huggingface_hub.hf_hub_download`` and then read from the local cache
(offline use works once cached).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pythia_data.errors import InputError, UsageError

__all__ = ["TokenizerConfig", "bundled_path", "resolve_spec", "read_config", "open_config"]

_DATA = Path(__file__).resolve().parent.parent / "data"
BUNDLED_NAME = "EleutherAI/gpt-neox-20b"
EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "[SEP]")


def bundled_path() -> Path:
    return _DATA / "20B_tokenizer.json"


class TokenizerConfig:
    """A ``tokenizer.json`` plus where it came from. ``raw`` (the parsed JSON) is parsed on
    first use when the config was opened from the file's bytes (:func:`open_config`): a
    tokenizer loaded from the compiled-tables cache never needs it."""

    def __init__(self, path: Path, name: str, raw: dict | None = None, *,
                 data: bytes | None = None):
        if raw is None and data is None:
            raise ValueError("TokenizerConfig needs raw or data")
        self.path = path
        self.name = name
        self._raw = raw
        self._data = data
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"TokenizerConfig(path={self.path!r}, name={self.name!r})"

    @property
    def raw(self) -> dict:
        if self._raw is None:
            self._raw = _parse(self.path, self._data)
        return self._raw

    @property
    def data(self) -> bytes | None:
        """The file's bytes as read (None for a config made from parsed JSON)."""
        return self._data

    @property
    def digest(self) -> str | None:
        """SHA-256 (hex) of :attr:`data` (None without it)."""
        if self._digest is None and self._data is not None:
            self._digest = hashlib.sha256(self._data).hexdigest()
        return self._digest

    @property
    def model(self) -> dict:
        return self.raw.get("model") or {}

    @property
    def added_tokens(self) -> list[dict]:
        return list(self.raw.get("added_tokens") or [])

    @property
    def vocab(self) -> dict[str, int]:
        """token -> id of the model's vocabulary (a Unigram list gives positions)."""
        vocab = self.model.get("vocab")
        if isinstance(vocab, dict):
            return {k: v for k, v in vocab.items() if isinstance(v, int)}
        if isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
            out: dict[str, int] = {}
            for i, entry in enumerate(vocab):
                if isinstance(entry, list | tuple) and entry and isinstance(entry[0], str):
                    out.setdefault(entry[0], i)
            return out
        return {}

    @property
    def vocab_size(self) -> int:
        """Largest id + 1 as stored in the file (the engines use the ids HF assigns, see
        :mod:`pythia_data.tokenize.model`)."""
        ids = list(self.vocab.values())
        ids += [t["id"] for t in self.added_tokens
                if isinstance(t, dict) and isinstance(t.get("id"), int)]
        return (max(ids) + 1) if ids else 0

    @property
    def eod_id(self) -> int | None:
        by_content = {t.get("content"): t.get("id") for t in self.added_tokens
                      if isinstance(t, dict) and t.get("special")}
        vocab = self.vocab
        for cand in EOD_CANDIDATES:
            if isinstance(by_content.get(cand), int):
                return int(by_content[cand])
        for cand in EOD_CANDIDATES:
            if cand in vocab:
                return int(vocab[cand])
        return None


def resolve_spec(spec) -> tuple[Path, str]:
    """``(path to tokenizer.json, display name)`` for ``spec`` (see the module docstring)."""
    if spec is None:
        return bundled_path(), BUNDLED_NAME
    if isinstance(spec, os.PathLike) or isinstance(spec, str):
        text = os.fspath(spec)
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
            if not path.is_file():
                raise InputError(f"{spec}: folder has no tokenizer.json")
            return path, text
        if path.is_file():
            return path, text
        looks_like_repo = (
            isinstance(spec, str)
            and text.count("/") == 1
            and not text.startswith((".", "/", "~"))
            and not text.endswith(".json")
        )
        if not looks_like_repo:
            raise InputError(f"{spec}: no such tokenizer file or folder")
        return _hub_download(text), text
    raise UsageError(f"tokenizer spec must be None, a path or a hub model id, not {spec!r}")


def _hub_download(repo_id: str) -> Path:
    """The hub model's ``tokenizer.json``: the local cache first; then, when the hub answers
    within a few seconds, a download; offline, ``EleutherAI/gpt-neox-20b`` is the bundled
    copy (a warning says so) and any other id is one error line, never ~25 s of retries."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UsageError(f"{repo_id}: huggingface_hub is needed to fetch a hub tokenizer") from exc
    from pythia_data.io.net import endpoint, quiet_hub, unreachable_reason

    with quiet_hub():
        try:
            return Path(hf_hub_download(repo_id, "tokenizer.json", local_files_only=True))
        except Exception:  # noqa: BLE001, S110 - not cached: go on
            pass
    reason = unreachable_reason()
    if reason is None:
        with quiet_hub():
            try:
                return Path(hf_hub_download(repo_id, "tokenizer.json"))
            except Exception as exc:  # noqa: BLE001 - hub errors are many classes
                if type(exc).__name__ == "LocalEntryNotFoundError":  # connection failed
                    reason = f"cannot reach the hub at {endpoint()}"
                else:
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if repo_id.lower() == BUNDLED_NAME.lower():
        import warnings

        warnings.warn(f"{repo_id}: the hub is not reachable ({reason}); using the bundled "
                      "copy of its tokenizer.json", stacklevel=2)
        return bundled_path()
    raise InputError(f"{repo_id}: cannot get tokenizer.json from the hub ({reason})")


def open_config(spec) -> TokenizerConfig:
    """The tokenizer.json of ``spec``, read but not yet parsed (see :func:`read_config`)."""
    path, name = resolve_spec(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return TokenizerConfig(path, name, data=data)


def read_config(spec) -> TokenizerConfig:
    """The tokenizer.json of ``spec``, parsed and checked now (InputError if it is not one)."""
    config = open_config(spec)
    config.raw  # noqa: B018 - parsed (and checked) here
    return config


def _parse(path: Path, data: bytes) -> dict:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid tokenizer.json ({exc})") from None
    except RecursionError:
        raise InputError(f"{path}: not a valid tokenizer.json (nested too deeply)") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise InputError(f"{path}: not a tokenizer.json (no 'model' object)")
    if not isinstance(raw.get("added_tokens") or [], list):
        raise InputError(f"{path}: not a tokenizer.json ('added_tokens' is not a list)")
    return raw
