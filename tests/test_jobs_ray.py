"""The Ray executor for real (issue 16): a local cluster, a two-process cluster on loopback,
a worker killed mid-unit, the driver killed and the job resumed. Marked ``ray``: excluded
from the default run, run by ``.ci/run`` when Ray installs (``pytest -m ray``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from pythia_data.errors import InputError
from pythia_data.jobs import RayExecutor
from pythia_data.jobs.plan import Unit
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import tokenize_files
from pythia_data.tokenize.units import tokenize_units
from tests.conftest import REPO, subprocess_env
from tests.test_jobs import _corpus, _files, _records, _wait_for_records

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


def _env() -> dict:
    env = subprocess_env()
    # Loopback comes from --node-ip-address=127.0.0.1 on both nodes. Not from
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: on Linux that value makes the second
    # `ray start --address` refuse to join ("Multi-node Ray clusters are not supported").
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # a throwaway cluster on 127.0.0.1: no token (a shared ~/.ray/auth_token written by
    # another cluster on this machine would otherwise make the second node's join fail)
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def _stop(temp: Path) -> None:
    """Stop the cluster whose session lives under ``temp``: only its own processes (their
    command lines name ``temp``), never other Ray clusters on this machine (``ray stop``
    would stop them all)."""
    for _ in range(2):
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(temp).encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    # Ray workers import the functions of this module by name
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    yield
    if ray.is_initialized():
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


@pytest.fixture(scope="module")
def cluster():
    """``ray start --head`` + a second ``ray start --address``: two raylets on 127.0.0.1,
    one CPU each. Yields the address."""
    port = _free_port()
    # a short folder: Ray's socket paths under it must stay below 108 bytes (AF_UNIX), which
    # pytest's (and xdist's) temporary folders exceed
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = _env()
    head = [_ray_bin(), "start", "--head", "--node-ip-address=127.0.0.1",
            f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={temp}"]
    address = f"127.0.0.1:{port}"
    try:
        for cmd in (head, [_ray_bin(), "start", f"--address={address}",
                           "--node-ip-address=127.0.0.1", "--num-cpus=1",
                           "--disable-usage-stats"]):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, f"{' '.join(cmd[1:3])}: {r.stderr[-2000:]}"
        yield address
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None, workers=1)


def test_local_ray_cluster_matches_one_process(tmp_path, tok):
    src = [str(_corpus(tmp_path / "a.jsonl", 400))]
    one = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    out = str(tmp_path / "ray")
    s = tokenize_units(src, out, tok, RayExecutor(None, 2), append_eod=True, unit_bytes=2000)
    assert s["executor"] == "ray" and s["units"] > 4
    assert _files(out) == _files(one)
    assert not ray.is_initialized()  # the command stopped the cluster it started


def test_two_node_loopback_cluster_cli_matches_one_process(tmp_path, tok, cluster):
    src = str(_corpus(tmp_path / "a.jsonl", 600))
    one = tokenize_files([src], tmp_path / "one", tok, append_eod=True)["output"]
    r = subprocess.run([sys.executable, "-m", "pythia_data", "tokenize", src, "-o",
                        str(tmp_path / "cli"), "--append-eod", "--executor", "ray",
                        "--ray-address", cluster, "--unit-size", "4k", "--json", "-q"],
                       env=_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["executor"] == "ray" and s["units"] > 4
    assert _files(str(tmp_path / "cli_text_document")) == _files(one)


def _modules(names, unit):
    return [n for n in names if n in sys.modules], os.getpid()


def test_start_connects_early_and_close_disconnects(tmp_path, tok, cluster):
    """start() connects and starts the warm-up tasks; run() uses that connection and leaves
    it open; close() ends it. A close() right after start() (an error or Ctrl-C before
    the units) cancels the warm-ups and disconnects too."""
    ex = RayExecutor(cluster)
    ex.start("colorsys")  # a module nothing else here imports
    assert ray.is_initialized()
    units = [Unit(k, "file", f"/x/{k}", 0, 1, 1) for k in range(6)]
    out = ex.run(units, partial(_modules, ["colorsys"]))
    assert ray.is_initialized()  # start()'s caller closes
    # the units ran in the workers the warm-ups started (a job's idle workers are reused)
    assert any(mods == ["colorsys"] for mods, _ in out)
    assert all(pid != os.getpid() for _, pid in out)
    src = [str(_corpus(tmp_path / "a.jsonl", 300))]
    one = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    s = tokenize_units(src, str(tmp_path / "r"), tok, ex, append_eod=True, unit_bytes=2000)
    assert s["units"] > 4 and _files(str(tmp_path / "r")) == _files(one)
    ex.close()
    assert not ray.is_initialized()
    ex.close()  # twice: nothing left to do

    early = RayExecutor(cluster)
    early.start("colorsys")
    early.close()
    assert not ray.is_initialized()


def test_warm_up_imports_the_module():
    from pythia_data.jobs.executors import _warm_up

    sys.modules.pop("colorsys", None)
    assert _warm_up("colorsys") == os.getpid() and "colorsys" in sys.modules
    assert _warm_up(None) == _warm_up("__main__") == os.getpid()


def _suicide(marker_dir, unit):
    """Kill this Ray worker process (kill -9) the first time unit 1 runs."""
    marker = os.path.join(marker_dir, f"ran-{unit.id}")
    first = not os.path.exists(marker)
    with open(marker, "a") as fh:
        fh.write("x")
    if unit.id == 1 and first:
        os.kill(os.getpid(), signal.SIGKILL)
    return unit.id * 10


def _bad(unit):
    raise InputError(f"unit {unit.id}: bad input")


def test_worker_killed_mid_unit_is_redone(tmp_path, cluster):
    units = [Unit(k, "file", f"/x/{k}", 0, 1, 1) for k in range(5)]
    seen = []
    out = RayExecutor(cluster).run(units, partial(_suicide, str(tmp_path)), seen.append)
    assert out == [k * 10 for k in range(5)]
    assert sum(seen) == 5
    assert (tmp_path / "ran-1").read_text() == "xx"
    with pytest.raises(InputError, match="unit 0: bad input"):  # not retried, same class
        RayExecutor(cluster).run(units[:1], _bad)


def test_driver_killed_then_rerun_does_only_missing_units(tmp_path, tok, cluster):
    src = str(_corpus(tmp_path / "a.jsonl", 3000))
    one = tokenize_files([src], tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    args = [sys.executable, "-m", "pythia_data", "tokenize", src, "-o", out, "-q", "--json",
            "--executor", "ray", "--ray-address", cluster, "--unit-size", "4k"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=REPO)
    done_dir = out + "_text_document.job/done"
    _wait_for_records(proc, done_dir, timeout=300, poll=0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _records(done_dir)
    r = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["units_resumed"] >= finished >= 3
    assert s["units_run"] == s["units"] - s["units_resumed"]
    assert _files(out + "_text_document") == _files(one)


def test_checksum_on_the_loopback_cluster(tmp_path, cluster):
    for k in range(4):
        (tmp_path / f"f{k}.bin").write_bytes(bytes([k]) * 5000)
    plain = subprocess.run([sys.executable, "-m", "pythia_data", "checksum", str(tmp_path),
                            "-q"], env=_env(), capture_output=True, text=True, cwd=REPO)
    on_ray = subprocess.run([sys.executable, "-m", "pythia_data", "checksum", str(tmp_path),
                             "-q", "--executor", "ray", "--ray-address", cluster],
                            env=_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert plain.returncode == on_ray.returncode == 0, on_ray.stderr
    assert plain.stdout == on_ray.stdout and plain.stdout.count("\n") == 4
