"""Talking to the hub through ``huggingface_hub``: file listings with hashes, errors.

Everything that can go wrong on the network ends as one of the errors below (one line, no
traceback): :class:`HubNotFoundError` (repository, revision or file), :class:`HubAuthError`
(401/403: a private or gated repository), :class:`HubUnreachableError` (no connection).

The endpoint is read when a call is made (``HF_ENDPOINT``, else huggingface_hub's default),
never frozen at import, and passed explicitly to every huggingface_hub call.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pythia_data.errors import InputError, PythiaDataError
from pythia_data.io.net import CONNECT_TIMEOUT, endpoint, unreachable_reason

_GLOB = re.compile(r"[*?\[]")


class HubError(PythiaDataError):
    """A hub request failed (exit 2)."""


class HubNotFoundError(HubError, InputError):
    """The repository, revision or file does not exist."""


class HubAuthError(HubError, InputError):
    """The hub refused access (private or gated repository, bad token)."""


class HubUnreachableError(HubError):
    """No connection to the hub endpoint."""


TOKEN_HINT = "set HF_TOKEN or run `huggingface-cli login` (`hf auth login`)"


def check_reachable(url: str | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise :class:`HubUnreachableError` unless a TCP connection to the endpoint opens within
    ``timeout`` seconds. Skipped behind a proxy (the proxy decides); offline mode fails."""
    reason = unreachable_reason(url, timeout)
    if reason is not None:
        raise HubUnreachableError(reason)


def translate(exc: BaseException, what: str) -> PythiaDataError | None:
    """Our one-line error for a huggingface_hub / HTTP exception (``None``: not a hub error)."""
    from huggingface_hub import errors as hf

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.RevisionNotFoundError):
        return HubNotFoundError(f"{what}: no such revision")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return HubNotFoundError(f"{what}: no such file")
    if isinstance(exc, hf.GatedRepoError):
        return HubAuthError(f"{what}: gated repository, access not granted: {TOKEN_HINT}")
    if isinstance(exc, hf.RepositoryNotFoundError):
        if status == 401:
            return HubAuthError(
                f"{what}: repository not found or private (401 unauthorized): {TOKEN_HINT}"
            )
        return HubNotFoundError(f"{what}: no such dataset repository on the hub")
    if isinstance(exc, hf.HfHubHTTPError):
        if status in (401, 403):
            return HubAuthError(f"{what}: access refused ({status}): {TOKEN_HINT}")
        return HubError(f"{what}: hub answered HTTP {status}")
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return HubUnreachableError(f"{what}: HF_HUB_OFFLINE is set")
    if isinstance(exc, hf.LocalEntryNotFoundError):
        return HubUnreachableError(f"{what}: cannot reach the hub at {endpoint()}")
    mod = type(exc).__module__ or ""
    if mod.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3"):
        return HubUnreachableError(f"{what}: network error: {type(exc).__name__}: {exc}")
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError, IndexError)):
        # an answer that is not the JSON the hub API gives (an HTML page from a proxy or a
        # captive portal, a different server at HF_ENDPOINT)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        return HubError(f"{what}: the hub at {endpoint()} gave an unexpected answer "
                        f"({detail}); check HF_ENDPOINT and any proxy")
    return None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository: its path, size and hub digest.

    LFS files carry their SHA256; small files only the git blob id (a SHA1 over
    ``b"blob SIZE\\0" + content``), which is checked instead.
    """

    path: str
    size: int
    sha256: str | None
    git_oid: str | None

    @property
    def algorithm(self) -> str:
        return "sha256" if self.sha256 else "git-sha1"

    @property
    def digest(self) -> str | None:
        return self.sha256 or self.git_oid

    def to_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256,
                "git_oid": self.git_oid}


@dataclass
class RepoListing:
    repo_id: str
    revision: str
    commit: str
    files: list[RemoteFile]

    @property
    def total_bytes(self) -> int:
        return int(sum(f.size for f in self.files))


def _api(token):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token)


def _remote(entry) -> RemoteFile | None:
    lfs = getattr(entry, "lfs", None)
    if lfs is None and not hasattr(entry, "size"):
        return None  # a folder
    sha = None
    if lfs is not None:
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    return RemoteFile(entry.path, int(entry.size), sha.lower() if sha else None,
                      getattr(entry, "blob_id", None))


def is_glob(pattern: str) -> bool:
    return bool(_GLOB.search(pattern))


def select(files: Iterable[RemoteFile], include: Sequence[str]) -> list[RemoteFile]:
    """Files matching any ``include`` glob (``*`` crosses ``/``; a folder name selects what is
    under it); all files when ``include`` is empty."""
    files = list(files)
    if not include:
        return files
    out = []
    for f in files:
        for pat in include:
            p = pat.strip("/")
            if fnmatch.fnmatchcase(f.path, p) or f.path.startswith(p + "/"):
                out.append(f)
                break
    return out


def list_repo(repo_id: str, revision: str | None = None, include: Sequence[str] = (),
              *, token=None, connect_timeout: float = CONNECT_TIMEOUT) -> RepoListing:
    """Every file of dataset ``repo_id`` at ``revision`` (default ``main``) matching
    ``include``, with size and digest, at one pinned commit.

    Raises :class:`HubNotFoundError` when nothing matches (or a named file is absent).
    """
    revision = revision or "main"
    what = f"{repo_id}@{revision}" if revision != "main" else repo_id
    check_reachable(timeout=connect_timeout)
    api = _api(token)
    try:
        commit = api.dataset_info(repo_id, revision=revision).sha or revision
        literal = include and not any(is_glob(p) for p in include)
        if literal:
            entries = api.get_paths_info(repo_id, [p.strip("/") for p in include],
                                         repo_type="dataset", revision=commit, expand=True)
            files = [f for f in map(_remote, entries) if f is not None]
            folders = [e.path for e in entries if _remote(e) is None]
            if folders:  # a folder named: list what is under it
                for folder in folders:
                    files += [f for f in map(_remote, api.list_repo_tree(
                        repo_id, folder, repo_type="dataset", revision=commit, recursive=True,
                        expand=True)) if f is not None]
            found = {e.path for e in entries}
            absent = [p for p in include if p.strip("/") not in found]
            if absent:
                raise HubNotFoundError(f"{what}: no such file: {absent[0]}")
        else:
            entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=commit,
                                         recursive=True, expand=True)
            files = select([f for f in map(_remote, entries) if f is not None], include)
            if include and not files:
                raise HubNotFoundError(
                    f"{what}: no file matches --include {' '.join(include)}")
    except PythiaDataError:
        raise
    except Exception as exc:
        err = translate(exc, what)
        if err is None:
            raise
        raise err from None
    files.sort(key=lambda f: f.path)
    return RepoListing(repo_id, revision, commit, files)
