"""The Pythia datasets on the Hugging Face hub, by short name, with what is known offline.

Sizes here are what the layout implies (exact for the preshuffled files, approximate
elsewhere); ``pythia-data download --list`` shows the hub's own figures when it is reachable.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

PRESHUFFLED_BIN = 147_164_160 * 2049 * 2  # num_samples x (seq_length + 1) x uint16
PRESHUFFLED_IDX = 34 + 20 * 147_164_160 + 8  # header + sizes + pointers + doc_idx (N + 1)


@dataclass(frozen=True)
class KnownDataset:
    name: str
    repo_id: str
    kind: str  # "idxmaps", "preshuffled" or "seeds"
    description: str
    files: int  # expected number of data files
    approx_bytes: int
    exact: bool = False  # approx_bytes is exact

    def to_dict(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "kind": self.kind,
                "description": self.description, "files": self.files,
                "bytes": self.approx_bytes, "bytes_exact": self.exact}


KNOWN: dict[str, KnownDataset] = {
    d.name: d
    for d in (
        KnownDataset(
            "pythia-deduped-idxmaps", "EleutherAI/pythia_deduped_pile_idxmaps", "idxmaps",
            "deduplicated Pile, tokenized, in document order (83 x 5 GB shards + .idx); "
            "pair with `pythia-data order` for the training order",
            84, 414_000_000_000,
        ),
        KnownDataset(
            "pile-deduped-preshuffled", "EleutherAI/pile-deduped-pythia-preshuffled",
            "preshuffled",
            "deduplicated Pile in Pythia-deduped training order, 2049 tokens per row "
            "(21 x ~29 GB shards + document.idx)",
            22, PRESHUFFLED_BIN + PRESHUFFLED_IDX, True,
        ),
        KnownDataset(
            "pile-standard-preshuffled", "EleutherAI/pile-standard-pythia-preshuffled",
            "preshuffled",
            "standard Pile in Pythia training order, 2049 tokens per row "
            "(21 x ~29 GB shards + document.idx)",
            22, PRESHUFFLED_BIN + PRESHUFFLED_IDX, True,
        ),
        KnownDataset(
            "pile-preshuffled-seeds", "EleutherAI/pile-preshuffled-seeds", "seeds",
            "GPT-NeoX index files (doc/sample/shuffle_idx .npy) of the seed runs: seed0 "
            "(seed 1234) .. seed8; select with --include 'seed3/*'",
            27, 27 * 900_000_000,
        ),
    )
}

#: Files published with known defects: (repo id, glob on the repo path) -> reason.
KNOWN_BAD: dict[tuple[str, str], str] = {
    ("EleutherAI/pile-preshuffled-seeds", "seed2/*_2s_shuffle_idx.npy"):
        "pythia #190: this published shuffle_idx is mostly zeros (not a permutation); "
        "rebuild it with `pythia-data order build --seed 2`",
}


def lookup(name_or_repo: str) -> tuple[str, KnownDataset | None]:
    """``(repo_id, known dataset or None)`` for a short name or a repo id."""
    if name_or_repo in KNOWN:
        d = KNOWN[name_or_repo]
        return d.repo_id, d
    for d in KNOWN.values():
        if d.repo_id.lower() == name_or_repo.lower():
            return d.repo_id, d
    return name_or_repo, None


def known_bad(repo_id: str, path: str) -> str | None:
    """Why ``path`` of ``repo_id`` is known to be bad, or ``None``."""
    for (repo, pattern), reason in KNOWN_BAD.items():
        if repo.lower() == repo_id.lower() and fnmatch.fnmatchcase(path, pattern):
            return reason
    return None
