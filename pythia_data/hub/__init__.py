"""Verified, resumable downloads of Pythia's datasets from the Hugging Face hub.

- :func:`plan_download` / :func:`run_download`: list a dataset repository with its SHA256s,
  write the manifest, check disk space, then download through ``huggingface_hub`` with each
  file hashed as it lands (:mod:`pythia_data.hub.download`);
- :func:`check_against_hub`: verify local files against the hub's digests;
- :func:`list_known`: the Pythia datasets by short name (:mod:`pythia_data.hub.known`);
- :mod:`pythia_data.hub.npycheck`: structural checks of GPT-NeoX index ``.npy`` files.

``huggingface_hub`` is imported only when a function needs it.
"""

from __future__ import annotations

from pythia_data.hub.download import (
    DownloadPlan,
    DownloadResult,
    InsufficientSpaceError,
    check_indexes_in,
    plan_download,
    run_download,
)
from pythia_data.hub.known import KNOWN, KnownDataset, lookup
from pythia_data.hub.remote import (
    HubAuthError,
    HubError,
    HubNotFoundError,
    HubUnreachableError,
    RemoteFile,
    list_repo,
)
from pythia_data.hub.verify import HubCheckReport, check_against_hub


def list_known(online: bool = True, token=None, connect_timeout: float = 3.0) -> list[dict]:
    """The known datasets; with ``online``, the hub's file count and size for each (falls
    back to what is known offline, per dataset, when the hub cannot be asked)."""
    out = []
    reachable = online
    for d in KNOWN.values():
        row = d.to_dict()
        row["source"] = "offline"
        if reachable:
            try:
                listing = list_repo(d.repo_id, token=token, connect_timeout=connect_timeout)
            except HubUnreachableError as exc:
                reachable = False
                row["error"] = str(exc)
            except HubError as exc:
                row["error"] = str(exc)
            else:
                row.update(files=len(listing.files), bytes=listing.total_bytes,
                           bytes_exact=True, source="hub", commit=listing.commit)
        out.append(row)
    return out


__all__ = [
    "KNOWN", "DownloadPlan", "DownloadResult", "HubAuthError", "HubCheckReport", "HubError",
    "HubNotFoundError", "HubUnreachableError", "InsufficientSpaceError", "KnownDataset",
    "RemoteFile", "check_against_hub", "check_indexes_in", "list_known", "list_repo", "lookup",
    "plan_download", "run_download",
]
