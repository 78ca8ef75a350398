"""`pythia-data download` end to end against the stand-in hub (real huggingface_hub code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from tests.conftest import subprocess_env
from tests.hub_fixtures import (
    PRESHUFFLED,
    SEEDS,
    hub_server,  # noqa: F401 (registers the 'hub' fixture)
    listdir_all,
    one_line,
    preshuffled_files,
    run_cli,
    sha,
)
from tests.hubserver import free_port

SHARD1 = "document-00001-of-00002.bin"


def test_download_verifies_writes_manifest_and_next_step(hub, tmp_path):
    out = tmp_path / "pre"
    r = run_cli(["download", "pile-deduped-preshuffled", "--local-dir", str(out)])
    assert r.exit_code == 0, r.output
    files = preshuffled_files()
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    manifest = (out / "pile-deduped-pythia-preshuffled.sha256").read_text().splitlines()
    lfs = {n for n in files if not n.endswith(".md")}
    assert sorted(manifest) == sorted(f"{sha(files[n])}  {n}" for n in lfs)
    assert "pythia-data batches" in r.stdout and "--order preshuffled" in r.stdout
    assert f"{out}/document" in r.stdout and "pythia-data unshard" in r.stdout
    # Nothing left behind but the state record.
    assert not (out / ".pythia-data" / "incoming").exists()
    state = json.loads((out / ".pythia-data" / "download-state.json").read_text())
    assert set(state["files"]) == set(files)
    assert state["files"][SHARD1]["digest"] == sha(files[SHARD1])


def test_rerun_skips_verified_files_without_fetching(hub, tmp_path, monkeypatch):
    out = tmp_path / "pre"
    assert run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"]).exit_code == 0
    before = hub.total("cdn") + hub.total("resolve") + hub.total("resolve-meta")
    assert before > 0, hub.requests
    import pythia_data.hub.state as state_mod

    def no_hashing(*a, **k):
        raise AssertionError("a verified file was read again")

    monkeypatch.setattr(state_mod, "hash_file", no_hashing)
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert hub.total("cdn") + hub.total("resolve") + hub.total("resolve-meta") == before
    doc = json.loads(r.stdout)
    assert doc["verified"] == 5 and doc["downloaded"] == [] and doc["ok"] is True


def test_rerun_fetches_only_what_is_missing_and_rehashes_touched_files(hub, tmp_path):
    out = tmp_path / "pre"
    assert run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"]).exit_code == 0
    (out / SHARD1).unlink()
    other = out / "document.idx"
    os.utime(other, ns=(1, 1))  # touched: hashed again (and kept), not downloaded
    gets = {n: hub.gets(n) for n in preshuffled_files()}
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["downloaded"] == [SHARD1] and doc["adopted"] == ["document.idx"]
    assert {n: hub.gets(n) - gets[n] for n in gets} == {
        n: int(n == SHARD1) for n in gets}


@pytest.mark.slow
def test_dropped_connection_mid_file_resumes(hub, tmp_path):
    hub.faults[SHARD1] = ["drop"]
    out = tmp_path / "pre"
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert (out / SHARD1).read_bytes() == preshuffled_files()[SHARD1]
    assert hub.gets(SHARD1) == 2  # the Range retry
    assert hub.requests[("GET", "cdn", SHARD1)] == 2


def test_same_size_corrupt_file_is_fetched_again(hub, tmp_path):
    hub.faults[SHARD1] = ["corrupt"]
    out = tmp_path / "pre"
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["retried"] == [SHARD1]
    assert (out / SHARD1).read_bytes() == preshuffled_files()[SHARD1]


def test_corrupt_twice_fails_and_never_keeps_the_file(hub, tmp_path):
    hub.faults[SHARD1] = ["corrupt", "corrupt"]
    out = tmp_path / "pre"
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"])
    assert r.exit_code == 1
    assert SHARD1 in r.stderr and "verification failed" in r.stderr
    assert "FAILED" in r.stdout and "mismatch" in r.stdout
    left = listdir_all(out)
    assert not any(p.endswith(SHARD1) for p in left), left
    assert (out / "document-00000-of-00002.bin").exists()  # the others are kept
    # and a rerun fetches only the failed file
    gets = hub.gets("document-00000-of-00002.bin")
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert hub.gets("document-00000-of-00002.bin") == gets


def test_short_file(hub, tmp_path):
    hub.faults[SHARD1] = ["short", "short"]
    out = tmp_path / "pre"
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"])
    assert r.exit_code == 1
    assert SHARD1 in r.stderr
    assert not (out / SHARD1).exists()
    hub.faults[SHARD1] = ["short"]
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert (out / SHARD1).read_bytes() == preshuffled_files()[SHARD1]


def test_existing_wrong_file_is_moved_aside(hub, tmp_path):
    out = tmp_path / "pre"
    out.mkdir()
    good = preshuffled_files()[SHARD1]
    (out / SHARD1).write_bytes(bytes(len(good)))  # same size, wrong content (a git-lfs leftover)
    r = run_cli(["download", PRESHUFFLED, "-d", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / SHARD1).read_bytes() == good
    assert "moved to" in r.stderr
    assert (out / ".pythia-data" / "rejected" / SHARD1).read_bytes() == bytes(len(good))


def test_missing_repo_file_revision_exit_2_one_line(hub, tmp_path):
    cases = [
        (["download", "nobody/nothing"], "no such dataset repository"),
        (["download", PRESHUFFLED, "--include", "nope.bin"], "no such file"),
        (["download", PRESHUFFLED, "--include", "*.parquet"], "no file matches"),
        (["download", PRESHUFFLED, "--revision", "v9"], "no such revision"),
        (["download", "not-a-known-name"], "unknown dataset"),
    ]
    for args, words in cases:
        r = run_cli(args + ["-d", str(tmp_path / "x")])
        assert r.exit_code == 2, (args, r.output)
        assert one_line(r.stderr) and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.output


def test_private_repo_401_hint_and_token(hub, tmp_path, monkeypatch):
    r = run_cli(["download", "someone/private-data", "-d", str(tmp_path / "p")])
    assert r.exit_code == 2
    assert one_line(r.stderr) and "HF_TOKEN" in r.stderr and "login" in r.stderr
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    r = run_cli(["download", "someone/private-data", "-d", str(tmp_path / "p"), "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "a.bin").read_bytes() == b"secret" * 100


def test_unreachable_endpoint_one_line_fast(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    t = time.monotonic()
    r = run_cli(["download", PRESHUFFLED, "-d", str(tmp_path / "x")])
    assert time.monotonic() - t < 5
    assert r.exit_code == 2
    assert one_line(r.stderr) and "cannot reach the hub" in r.stderr


def test_disk_space_refusal(hub, tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    r = run_cli(["download", PRESHUFFLED, "-d", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert one_line(r.stderr) and "not enough disk space" in r.stderr
    assert "needed" in r.stderr and "1.0 kB free" in r.stderr
    assert hub.total("cdn") == 0


def test_dry_run_downloads_nothing(hub, tmp_path):
    out = tmp_path / "pre"
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert hub.total("cdn") == 0 and hub.total("resolve") == 0
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("fetch")]
    assert len(lines) == 5 and any(SHARD1 in ln for ln in lines)
    assert (out / "pile-deduped-pythia-preshuffled.sha256").is_file()
    assert listdir_all(out) == {"pile-deduped-pythia-preshuffled.sha256"}
    r = run_cli(["download", PRESHUFFLED, "-d", str(out), "--dry-run", "--json"])
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and doc["to_fetch"] == 5
    assert {f["path"] for f in doc["fetch"]} == set(preshuffled_files())


def test_include_without_index_warns(hub, tmp_path):
    r = run_cli(["download", PRESHUFFLED, "-d", str(tmp_path / "x"), "--include", "*.bin",
                 "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "document.idx is not selected" in r.stderr


def test_seeds_zeroed_shuffle_idx_is_flagged(hub, tmp_path):
    out = tmp_path / "seeds"
    r = run_cli(["download", "pile-preshuffled-seeds", "-d", str(out), "--include", "seed2/*"])
    assert r.exit_code == 1, r.output
    assert "#190" in r.stderr  # known bad, said before downloading
    assert "not a permutation" in r.stderr and "are 0" in r.stderr
    assert "--allow-bad" in r.stderr
    assert len(listdir_all(out / "seed2")) == 3  # the hub's bytes are kept (they are verified)
    r = run_cli(["download", "pile-preshuffled-seeds", "-d", str(out), "--include", "seed2/*",
                 "--allow-bad", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    bad = [c for c in doc["checks"] if not c["ok"]]
    assert [c["kind"] for c in bad] == ["shuffle_idx"]


def test_seeds_good_seed_passes(hub, tmp_path):
    out = tmp_path / "seeds"
    r = run_cli(["download", SEEDS, "-d", str(out), "--include", "seed1", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["files"] == 3 and doc["ok"] is True
    assert sorted(c["kind"] for c in doc["checks"]) == ["doc_idx", "run", "sample_idx",
                                                       "shuffle_idx"]
    assert all(c["ok"] for c in doc["checks"])


def test_hub_digest_disagreeing_with_pythia_is_reported(tmp_path, monkeypatch):
    from tests.hub_fixtures import point_hf_at
    from tests.hubserver import HubServer, Repo

    repo = "EleutherAI/pythia_deduped_pile_idxmaps"
    with HubServer({repo: Repo({"pile_0.87_deduped_text_document.idx": b"not the real one"})}) as srv:
        point_hf_at(monkeypatch, srv.endpoint, tmp_path / "home")
        r = run_cli(["download", "pythia-deduped-idxmaps", "-d", str(tmp_path / "i"), "-q"])
        assert r.exit_code == 1
        assert "differs from Pythia's published" in r.stderr
        assert "a659c5a57fa772fb" in r.stderr
        r = run_cli(["download", "pythia-deduped-idxmaps", "-d", str(tmp_path / "i"), "-q",
                     "--allow-bad"])
        assert r.exit_code == 0


def test_list_online_and_offline(hub, tmp_path, monkeypatch):
    r = run_cli(["download", "--list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {d["name"]: d for d in json.loads(r.stdout)["datasets"]}
    assert set(rows) == {"pythia-deduped-idxmaps", "pile-deduped-preshuffled",
                         "pile-standard-preshuffled", "pile-preshuffled-seeds"}
    assert rows["pile-deduped-preshuffled"]["source"] == "hub"
    assert rows["pile-deduped-preshuffled"]["files"] == 5
    assert rows["pile-preshuffled-seeds"]["files"] == 9
    assert rows["pythia-deduped-idxmaps"]["source"] == "offline"  # not on the stand-in
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    t = time.monotonic()
    r = run_cli(["download", "--list"])
    assert time.monotonic() - t < 5
    assert r.exit_code == 0
    assert "offline figures" in r.stdout and "606.0 GB" in r.stdout


def test_checksum_from_hub(hub, tmp_path):
    out = tmp_path / "pre"
    assert run_cli(["download", PRESHUFFLED, "-d", str(out), "-q"]).exit_code == 0
    r = run_cli(["checksum", "--from-hub", PRESHUFFLED, str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.count(": OK") == 5
    data = bytearray((out / SHARD1).read_bytes())
    data[100] ^= 1
    (out / SHARD1).write_bytes(bytes(data))
    r = run_cli(["checksum", "--from-hub", "pile-deduped-preshuffled", str(out / SHARD1),
                 str(out / "document.idx"), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert {f["repo_path"]: f["status"] for f in doc["files"]} == {
        SHARD1: "mismatch", "document.idx": "ok"}
    r = run_cli(["checksum", "--from-hub", "nobody/nothing", str(out)])
    assert r.exit_code == 2 and one_line(r.stderr)


@pytest.mark.slow
def test_real_subprocess(hub, tmp_path):
    out = tmp_path / "sub"
    env = subprocess_env()
    p = subprocess.run([sys.executable, "-m", "pythia_data", "download", PRESHUFFLED,
                        "--local-dir", str(out), "--json"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ok"] is True
    assert (out / SHARD1).read_bytes() == preshuffled_files()[SHARD1]
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([sys.executable, "-m", "pythia_data", "download", PRESHUFFLED,
                        "--local-dir", str(out)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert one_line(p.stderr) and "cannot reach the hub" in p.stderr


@pytest.mark.slow
def test_interrupt_ends_promptly_and_resumes(tmp_path, monkeypatch):
    import signal

    from tests.hub_fixtures import point_hf_at
    from tests.hubserver import HubServer, Repo

    big = os.urandom(4 << 20)  # 64 chunks x 50 ms: ~3 s when trickled
    with HubServer({"ns/big": Repo({"big.bin": big})}) as srv:
        point_hf_at(monkeypatch, srv.endpoint, tmp_path / "home")
        srv.faults["big.bin"] = ["slow"]
        env = subprocess_env()
        p = subprocess.Popen([sys.executable, "-m", "pythia_data", "download", "ns/big", "-d",
                              str(tmp_path / "b")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while srv.gets("big.bin") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        t = time.monotonic()
        _, err = p.communicate(timeout=20)
        assert time.monotonic() - t < 2  # did not wait for the trickling file
        assert p.returncode == 130
        assert err.splitlines()[-1] == "pythia-data: interrupted (rerun the same command to resume)"
        assert not (tmp_path / "b" / "big.bin").exists()
        assert list((tmp_path / "b").rglob("*.incomplete"))  # huggingface_hub's, left behind
        r = run_cli(["download", "ns/big", "-d", str(tmp_path / "b"), "-q"])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "b" / "big.bin").read_bytes() == big
        assert not list((tmp_path / "b").rglob("*.incomplete"))
