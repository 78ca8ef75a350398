"""Shared fixtures of the hub tests: a stand-in hub, and huggingface_hub pointed at it.

huggingface_hub reads most settings into module constants when it is first imported (by
whichever test imports it first), so the fixture sets the environment AND the constants;
the download code itself reads HF_ENDPOINT at call time and passes it explicitly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.hubserver import HubServer, Repo

PRESHUFFLED = "EleutherAI/pile-deduped-pythia-preshuffled"
SEEDS = "EleutherAI/pile-preshuffled-seeds"
RUN = "pile_train_0_indexmap_600ns_2048sl"


def preshuffled_files(seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    files = {f"document-{i:05d}-of-00002.bin": rng.bytes(150_000 + 1000 * i) for i in range(3)}
    files["document.idx"] = rng.bytes(4000)
    files["README.md"] = b"# preshuffled\n"
    return files


def npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def seed_run(seed: int, docs: int = 50, epochs: int = 2, samples: int = 300, zero: bool = False):
    """The three index files of one run: valid, or with a shuffle_idx that is mostly 0 (#190)."""
    rng = np.random.default_rng(seed)
    doc_idx = np.tile(np.arange(docs, dtype=np.int32), epochs)
    rng.shuffle(doc_idx)
    rows = np.zeros((samples + 1, 2), dtype=np.int32)
    pos, off = 0, 0
    for s in range(1, samples + 1):
        off += 7
        if off >= 30:
            pos, off = pos + 1, off - 30
        rows[s] = (pos, off)
    shuffle = rng.permutation(samples).astype(np.uint32)
    if zero:
        shuffle[: int(samples * 0.92)] = 0
    s = 1234 if seed == 0 else seed
    stem = f"seed{seed}/{RUN}_{s}s"
    return {f"{stem}_doc_idx.npy": npy_bytes(doc_idx),
            f"{stem}_sample_idx.npy": npy_bytes(rows),
            f"{stem}_shuffle_idx.npy": npy_bytes(shuffle)}


def seeds_files() -> dict[str, bytes]:
    out = {}
    out.update(seed_run(0))
    out.update(seed_run(1))
    out.update(seed_run(2, zero=True))
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def point_hf_at(monkeypatch, endpoint: str, home: Path) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HTTPS_PROXY",
                "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from huggingface_hub import constants

    # Not ENDPOINT: hf_hub_url() swaps the prefix of HUGGINGFACE_CO_URL_TEMPLATE (frozen at
    # import) only when it starts with constants.ENDPOINT; the code passes endpoint= itself.
    for name, value in (("HF_HOME", str(home)),
                        ("HF_HUB_CACHE", str(home / "hub")),
                        ("HF_TOKEN_PATH", str(home / "token")),
                        ("HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
                        ("HF_HUB_DISABLE_XET", True), ("HF_HUB_DISABLE_TELEMETRY", True)):
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)


@pytest.fixture(name="hub")
def hub_server(tmp_path, monkeypatch):
    """A running stand-in hub with a preshuffled-style repo, the seeds repo and a private one;
    huggingface_hub pointed at it."""
    srv = HubServer({
        PRESHUFFLED: Repo(preshuffled_files()),
        SEEDS: Repo(seeds_files()),
        "someone/private-data": Repo({"a.bin": b"secret" * 100}, private=True, token="hf_good"),
    }).start()
    point_hf_at(monkeypatch, srv.endpoint, tmp_path / "hf-home")
    try:
        yield srv
    finally:
        srv.stop()


def run_cli(args, **kw):
    from pythia_data.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False, **kw)


def one_line(text: str) -> bool:
    return len([ln for ln in text.splitlines() if ln.strip()]) == 1


def listdir_all(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


__all__ = ["hub_server", "run_cli", "one_line", "sha", "seed_run", "preshuffled_files", "PRESHUFFLED",
           "SEEDS", "RUN", "listdir_all", "os", "point_hf_at"]
