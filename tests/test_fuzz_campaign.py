"""The hostile-input campaign of issue 18, run by ``.ci/run`` (``pytest -m slow``).

Part 1, a table: every hostile case found, each run as a real ``python -m pythia_data``
process, with its expected exit code and the one line it must print (a regex); never a
traceback, never a partial or lock file left behind. Faults a process cannot be given from
outside (a full disk, a refusing ``disk_usage``) are injected by a ``sitecustomize`` module
that the campaign puts on ``PYTHONPATH`` (``PYTHIA_FUZZ_FAULT=...``).

Part 2, mutations (seeded): JSON lines with random byte edits, ``.jsonl.zst`` files cut at
random offsets, index-cache sidecars with random edits -- every run ends in exit 0 with a
correct result, or in one ``pythia-data: error:`` line with exit 1 or 2.

The race campaign (two writers x thousands of rounds) is tests/test_issue18_races.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data.cli import cli
from pythia_data.dataset import write_dataset
from pythia_data.order import order_params
from pythia_data.order.cache import cache_paths
from pythia_data.shards import shard
from tests.conftest import REPO, position_docs
from tests.hub_fixtures import PRESHUFFLED, preshuffled_files
from tests.hubserver import HubServer, Repo, free_port

pytestmark = pytest.mark.slow

zstandard = pytest.importorskip("zstandard")
tokenizers = pytest.importorskip("tokenizers")

ORDER = ["--train-iters", "3", "--batch-size", "2", "--seq-length", "8"]

_SITECUSTOMIZE = '''
import os
fault = os.environ.get("PYTHIA_FUZZ_FAULT", "")
if fault == "no-space":
    import collections, shutil
    _U = collections.namedtuple("usage", "total used free")
    shutil.disk_usage = lambda p: _U(10**9, 10**9 - 100, 100)
elif fault == "enospc-download":
    import errno, warnings
    import huggingface_hub

    def _full(*a, **k):
        warnings.warn("Not enough free disk space to download the file.", UserWarning)
        raise OSError(errno.ENOSPC, "No space left on device")

    huggingface_hub.hf_hub_download = _full
'''


Case = namedtuple("Case", "name setup code pattern")


def jsonl(texts) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def _zst_blocks(parts):
    cobj = zstandard.ZstdCompressor().compressobj()
    out, ends = b"", []
    for part in parts:
        out += cobj.compress(part) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        ends.append(len(out))
    return out + cobj.flush(), ends


class _Html(BaseHTTPRequestHandler):
    body = b"<html>captive portal</html>"
    ctype = "text/html"

    def log_message(self, *args):
        pass

    def _answer(self):
        body = self.body
        self.send_response(200)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer


class _OddJson(_Html):
    body = json.dumps({"sha": 12, "siblings": "nope", "unexpected": [1]}).encode()
    ctype = "application/json"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs shared by the cases, a stand-in hub, an HTML-answering server."""
    root = tmp_path_factory.mktemp("campaign")
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    docs = write_dataset(root / "docs", position_docs([348, 9, 9, 9, 9, 9]))
    small = write_dataset(root / "small", position_docs([5, 17, 3, 40, 9, 12, 30]))
    hub = HubServer({PRESHUFFLED: Repo(preshuffled_files())}).start()
    html = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=html.serve_forever, daemon=True).start()
    odd = ThreadingHTTPServer(("127.0.0.1", 0), _OddJson)
    threading.Thread(target=odd.serve_forever, daemon=True).start()
    env = dict(os.environ)
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                "https_proxy", "http_proxy", "all_proxy"):
        env.pop(var, None)
    env.update({"PYTHONPATH": os.pathsep.join([str(site), str(REPO),
                                               env.get("PYTHONPATH", "")]),
                "HF_HOME": str(root / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_ENDPOINT": hub.endpoint, "PYTHIA_DATA_CACHE": str(root / "user-cache")})
    try:
        yield {"root": root, "docs": docs, "small": small, "hub": hub, "env": env,
               "html": f"http://127.0.0.1:{html.server_address[1]}",
               "odd": f"http://127.0.0.1:{odd.server_address[1]}"}
    finally:
        hub.stop()
        for srv in (html, odd):
            srv.shutdown()
            srv.server_close()


# --------------------------------------------------------------------------- the cases
# Each setup(world, d) prepares folder d and returns (argv, extra_env).


def _zst_cut(w, d):
    data, ends = _zst_blocks([jsonl([f"doc {i}" for i in range(900)]),
                              jsonl([f"doc {i}" for i in range(900, 2000)])])
    (d / "cut.jsonl.zst").write_bytes(data[: ends[0]])
    return ["tokenize", d / "cut.jsonl.zst", "-o", d / "o"], {}


def _zst_corrupt(w, d):
    data = zstandard.ZstdCompressor().compress(jsonl(["x" * 50] * 500))
    (d / "bad.jsonl.zst").write_bytes(data[:20] + bytes(b ^ 0x5A for b in data[20:60])
                                      + data[60:])
    return ["tokenize", d / "bad.jsonl.zst", "-o", d / "o"], {}


def _nested_line(w, d):
    (d / "deep.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return ["tokenize", d / "deep.jsonl", "-o", d / "o"], {}


def _bom(w, d):
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(["with a BOM"]))
    return ["tokenize", d / "bom.jsonl", "-o", d / "o", "-q"], {}


def _all_empty(w, d):
    (d / "e.jsonl").write_bytes(jsonl(["", ""]))
    return ["tokenize", d / "e.jsonl", "-o", d / "o", "-q"], {}


def _device(w, d):
    (d / "zero.txt").symlink_to("/dev/zero")
    return ["tokenize", d / "zero.txt", "-o", d / "o"], {}


def _control_char(w, d):
    (d / "c.jsonl").write_bytes(b'{"text": "a\x01"}\n')
    return ["tokenize", d / "c.jsonl", "-o", d / "o"], {}


def _unigram(w, d):
    tok = tokenizers.Tokenizer(tokenizers.models.Unigram(
        [("<unk>", 0.0), ("a", -1.0), ("b", -2.0), ("</s>", -3.0)], 0))
    tok.save(str(d / "uni.json"))
    (d / "a.jsonl").write_bytes(jsonl(["ab"]))
    return ["tokenize", d / "a.jsonl", "-o", d / "o", "-t", d / "uni.json", "--backend", "hf",
            "-q"], {}


def _tokenizer_nested(w, d):
    (d / "t.json").write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (d / "a.jsonl").write_bytes(jsonl(["ab"]))
    return ["tokenize", d / "a.jsonl", "-o", d / "o", "-t", d / "t.json"], {}


def _hub_model_offline(w, d):
    (d / "a.jsonl").write_bytes(jsonl(["ab"]))
    return (["tokenize", d / "a.jsonl", "-o", d / "o", "-t", "someone/some-model"],
            {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})


def _hub_neox_offline(w, d):
    (d / "a.jsonl").write_bytes(jsonl(["ab"]))
    return (["tokenize", d / "a.jsonl", "-o", d / "o", "-t", "EleutherAI/gpt-neox-20b", "-q"],
            {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})


def _batch_size_zero(w, d):
    return ["batches", w["small"], "-s", "0", "-o", d / "x.npy", "--batch-size", "0"], {}


def _seq_length_zero(w, d):
    return ["locate", w["small"], "-d", "1", "--seq-length", "0"], {}


def _no_eod(w, d):
    raw = json.loads((REPO / "pythia_data" / "data" / "20B_tokenizer.json").read_text())
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] != "<|endoftext|>"]
    raw["model"]["vocab"].pop("<|endoftext|>")
    (d / "noeod.json").write_text(json.dumps(raw))
    (d / "a.jsonl").write_bytes(jsonl(["x y"]))
    assert CliRunner().invoke(cli, ["tokenize", str(d / "a.jsonl"), "-o", str(d / "a"), "-q",
                                    "--append-eod"]).exit_code == 0
    return ["retokenize", d / "a_text_document", "-t", d / "noeod.json", "-o", d / "b"], {}


def _flipped_shard(w, d):
    rng = np.random.default_rng(5)
    src = write_dataset(d / "src" / "doc", [rng.integers(0, 60000, size=int(n))
                                            for n in rng.integers(1, 300, size=40)])
    shard(f"{src}.bin", d / "shards", shard_size=4000)
    victim = sorted((d / "shards").glob("doc-*.bin"))[1]
    data = bytearray(victim.read_bytes())
    data[5] ^= 1
    victim.write_bytes(bytes(data))
    return ["checksum", d / "shards"], {}


def _preshuffled_doc_data(w, d):
    return ["locate", w["docs"], "-d", "1", "--order", "preshuffled", "--batch-size", "2",
            "--seq-length", "8"], {}


def _merge_symlink(w, d):
    (d / "out.bin").symlink_to(f"{w['small']}.bin")
    return ["merge", d / "out", w["small"], w["docs"], "--force"], {}


def _retokenize_symlink(w, d):
    (d / "a.jsonl").write_bytes(jsonl(["x y", "z"]))
    assert CliRunner().invoke(cli, ["tokenize", str(d / "a.jsonl"), "-o", str(d / "a"), "-q",
                                    "--append-eod"]).exit_code == 0
    (d / "out_text_document.idx").symlink_to(d / "a_text_document.idx")
    return ["retokenize", d / "a_text_document", "-t", "bundled", "-o", d / "out",
            "--force"], {}


def _cache(w, d, mutate):
    data = write_dataset(d / "ds", position_docs([5, 17, 3, 40, 9]))
    assert CliRunner().invoke(cli, ["order", "build", data, "--index-dir", str(d / "idx"),
                                    *ORDER]).exit_code == 0
    paths = cache_paths(data, order_params(3, 2, 8, None, ()), d / "idx")
    mutate(paths)
    return ["batches", data, "-s", "0", "-o", d / "x.npy", "--order", "neox", "--index-dir",
            d / "idx", *ORDER], {}


def _sidecar(text_of):
    def mutate(paths):
        meta = json.loads(Path(paths["meta"]).read_text())
        Path(paths["meta"]).write_text(text_of(meta))
    return mutate


def _cache_arrays_list(w, d):
    return _cache(w, d, _sidecar(lambda m: json.dumps(dict(m, arrays=[1]))))


def _cache_nested(w, d):
    return _cache(w, d, _sidecar(
        lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"))


def _cache_dev_zero(w, d):
    def mutate(paths):
        os.unlink(paths["shuffle_idx"])
        os.symlink("/dev/zero", paths["shuffle_idx"])
    return _cache(w, d, mutate)


def _cache_dangling(w, d):
    def mutate(paths):
        for name in ("doc_idx", "sample_idx", "shuffle_idx", "meta"):
            os.unlink(paths[name])
        os.symlink(d / "victim.npy", paths["doc_idx"])
    return _cache(w, d, mutate)


def _unshard_no_space(w, d):
    src = write_dataset(d / "src" / "doc", position_docs([300] * 20))
    shard(f"{src}.bin", d / "shards", shard_size=3000)
    (d / "merged").mkdir()
    first = sorted((d / "shards").glob("doc-*.bin"))[0]
    return ["unshard", first, "-o", d / "merged", "-q"], {"PYTHIA_FUZZ_FAULT": "no-space"}


def _download_odd_json(w, d):
    return ["download", PRESHUFFLED, "-d", d / "x"], {"HF_ENDPOINT": w["odd"]}


def _download_html(w, d):
    return ["download", PRESHUFFLED, "-d", d / "x"], {"HF_ENDPOINT": w["html"]}


def _from_hub_html(w, d):
    (d / "f.bin").write_bytes(b"x")
    return ["checksum", "--from-hub", PRESHUFFLED, d / "f.bin"], {"HF_ENDPOINT": w["html"]}


def _download_enospc(w, d):
    return (["download", PRESHUFFLED, "-d", d / "x", "-q"],
            {"PYTHIA_FUZZ_FAULT": "enospc-download"})


def _from_hub_missing(w, d):
    assert CliRunner().invoke(cli, ["download", PRESHUFFLED, "-d", str(d / "pre"), "-q"],
                              env={"HF_ENDPOINT": w["env"]["HF_ENDPOINT"],
                                   "HF_HOME": w["env"]["HF_HOME"]}).exit_code in (0, 1)
    (d / "pre" / "document-00001-of-00002.bin").unlink(missing_ok=True)
    return ["checksum", "--from-hub", PRESHUFFLED, d / "pre", "-q"], {}


CASES = [
    Case("zst cut at a block boundary", _zst_cut, 2, r"cut\.jsonl\.zst: truncated \.zst file"),
    Case("corrupt zst", _zst_corrupt, 2, r"bad\.jsonl\.zst: "),
    Case("nested JSON line", _nested_line, 2, r"deep\.jsonl:1: not valid JSON \(nested too"),
    Case("UTF-8 BOM", _bom, 0, None),
    Case("every document empty", _all_empty, 0, r"^pythia-data: warning: no documents in the"),
    Case(".txt linked to /dev/zero", _device, 2, r"zero\.txt: not a regular file"),
    Case("JSON control character", _control_char, 2,
         r"Invalid control character at character 12\)$"),
    Case("Unigram tokenizer.json", _unigram, 0, None),
    Case("nested tokenizer.json", _tokenizer_nested, 2, r"t\.json: not a valid tokenizer"),
    Case("hub model offline", _hub_model_offline, 2,
         r"someone/some-model: cannot get tokenizer\.json from the hub \(cannot reach"),
    Case("gpt-neox-20b offline", _hub_neox_offline, 0,
         r"^pythia-data: warning: EleutherAI/gpt-neox-20b: .*using the bundled copy"),
    Case("--batch-size 0", _batch_size_zero, 2, r"--batch-size.*must be >= 1, not 0"),
    Case("--seq-length 0", _seq_length_zero, 2, r"--seq-length.*must be >= 1, not 0"),
    Case("retokenize without EOD", _no_eod, 2, r"has no end-of-document token.*--eod-id"),
    Case("checksum DIR, flipped shard byte", _flipped_shard, 1,
         r"^pythia-data: verification failed: 1 of"),
    Case("locate preshuffled on document data", _preshuffled_doc_data, 2,
         r"sequence 0 has 348 tokens, not seq_length \+ 1 = 9"),
    Case("merge --force into a link to an input", _merge_symlink, 2, r"is also the input"),
    Case("retokenize --force into a link to its input", _retokenize_symlink, 2,
         r"is also the input"),
    Case("sidecar arrays: [1]", _cache_arrays_list, 1, r"pythia_meta\.json: not a pythia-data"),
    Case("nested sidecar", _cache_nested, 1, r"pythia_meta\.json: unreadable sidecar"),
    Case("cache file linked to /dev/zero", _cache_dev_zero, 0, None),
    Case("dangling link in the cache folder", _cache_dangling, 0, None),
    Case("unshard without space", _unshard_no_space, 2, r"not enough space in "),
    Case("hub answers HTML (download)", _download_html, 2, r"unexpected answer|hub answered"),
    Case("hub answers HTML (checksum --from-hub)", _from_hub_html, 2,
         r"unexpected answer|hub answered"),
    Case("hub answers unexpected JSON (download)", _download_odd_json, 2,
         r"unexpected answer|hub answered"),
    Case("full disk during download", _download_enospc, 2, r"out of space in "),
    Case("checksum --from-hub, a file missing", _from_hub_missing, 1,
         r"verification failed: .*document-00001-of-00002\.bin"),
]


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*")
            if p.name.endswith((".partial", ".pythia-lock")) and ".pythia-data" not in p.parts]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(world, tmp_path, case):
    args, extra = case.setup(world, tmp_path)
    env = dict(world["env"], **extra)
    proc = subprocess.run([sys.executable, "-m", "pythia_data", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == case.code, (proc.returncode, proc.stderr, proc.stdout[-500:])
    if case.code == 0:
        assert all(ln.startswith("pythia-data: warning: ") for ln in err), err
        assert len(err) <= 1, err
    else:
        assert len(err) == 1 or (case.code == 1 and len(err) == 2), err  # summary + failure
        assert err[-1].startswith(("pythia-data: error: ", "pythia-data: verification")), err
    if case.pattern is not None:
        assert any(re.search(case.pattern, ln) for ln in err), (case.pattern, err)
    assert _leftovers(tmp_path) == []
    if case.name == "dangling link in the cache folder":
        assert not (tmp_path / "victim.npy").exists()


# --------------------------------------------------------------------------- mutations


def _invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _check_outcome(res, codes=(0, 2)):
    assert res.exit_code in codes, res.output
    if res.exit_code:
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("pythia-data: error: "), res.output


def test_mutated_json_lines(tmp_path):
    rng = random.Random(18)
    base = jsonl([f"document {i} \u00e9\u4e2d " * (i % 7) for i in range(30)])
    base += b'{"text": ["a", "b"]}\n"just a string"\n'
    for k in range(200):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            op, at = rng.random(), rng.randrange(len(data))
            if op < 0.4:
                data[at] = rng.randrange(256)
            elif op < 0.7:
                data.insert(at, rng.choice(b'{}[]",:\\\n\x00\xef\xbb\xbf\x1e'))
            else:
                del data[at]
        src = tmp_path / f"m{k}.jsonl"
        src.write_bytes(bytes(data))
        res = _invoke(["tokenize", src, "-o", tmp_path / f"o{k}", "-q", "--backend", "hf"])
        _check_outcome(res)
        assert _leftovers(tmp_path) == []


def test_zst_cut_anywhere(tmp_path):
    rng = random.Random(7)
    texts = [f"doc {i} " + "x" * (i % 50) for i in range(3000)]
    data, ends = _zst_blocks([jsonl(texts[:1000]), jsonl(texts[1000:2000]),
                              jsonl(texts[2000:])])
    cuts = sorted(set(ends[:-1] + [rng.randrange(1, len(data)) for _ in range(60)]))
    for at in cuts:
        src = tmp_path / "cut.jsonl.zst"
        src.write_bytes(data[:at])
        res = _invoke(["tokenize", src, "-o", tmp_path / "o", "-q", "--force"])
        assert res.exit_code == 2, (at, len(data), res.output)
        assert re.search(r"truncated \.zst|not a valid \.zst|not valid JSON", res.output), \
            res.output
        assert _leftovers(tmp_path) == []


def test_mutated_cache_sidecars(tmp_path):
    rng = random.Random(3)
    data = write_dataset(tmp_path / "ds", position_docs([5, 17, 3, 40, 9, 11, 2]))
    idx = tmp_path / "idx"
    assert _invoke(["order", "build", data, "--index-dir", idx, *ORDER]).exit_code == 0
    paths = cache_paths(data, order_params(3, 2, 8, None, ()), idx)
    good = Path(paths["meta"]).read_bytes()
    for _ in range(80):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            if rng.random() < 0.5:
                raw[at] = rng.choice(b'{}[]",:0123456789\\ntfe')
            else:
                del raw[at]
        Path(paths["meta"]).write_bytes(bytes(raw))
        res = _invoke(["batches", data, "-s", "0", "-o", tmp_path / "x.npy", "--force",
                       "--order", "neox", "--index-dir", idx, *ORDER])
        _check_outcome(res, codes=(0, 1, 2))


def test_ctrl_c_at_random_moments_of_tokenize(world, tmp_path):
    """Issue 18 item 6: Ctrl-C at any moment leaves either the complete dataset or nothing
    (no ``.partial``, no lock file) or, once work units are done, the job folder from which
    the same command finishes the same bytes -- 25 tries spread over the whole run."""
    import signal
    import time

    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl([f"document {i} " + "word " * (i % 200) for i in range(40_000)]))
    argv = [sys.executable, "-m", "pythia_data", "tokenize", str(src), "--append-eod", "-q"]
    started = time.monotonic()
    ref = subprocess.run([*argv, "-o", str(tmp_path / "ref")], env=world["env"],
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    full = time.monotonic() - started
    rng = random.Random(6)
    outcomes = []
    for k in range(25):
        out = tmp_path / f"try{k}"
        out.mkdir()
        proc = subprocess.Popen([*argv, "-o", str(out / "o")], env=world["env"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.2, full * 1.1))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        outcomes.append(proc.returncode)
        names = sorted(os.listdir(out))
        assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, err)
        if names == ["o_text_document.job"]:
            # interrupted after some work units were done: the job folder stays so that the
            # same command resumes (issue 16); rerun it, which must finish the dataset
            assert proc.returncode != 0, err
            again = subprocess.run([*argv, "-o", str(out / "o")], env=world["env"],
                                   capture_output=True, text=True, timeout=600)
            assert again.returncode == 0, again.stderr
            names = sorted(os.listdir(out))
        # (a Ctrl-C landing after the commit, while the interpreter exits, may still end
        # the process by the signal: the dataset is then complete)
        if proc.returncode == 0 or names:
            assert names == ["o_text_document.bin", "o_text_document.idx"], (names, err)
            for suffix in (".bin", ".idx"):
                assert (out / f"o_text_document{suffix}").read_bytes() == \
                    (tmp_path / f"ref_text_document{suffix}").read_bytes()
        else:
            assert "Traceback" not in err or "KeyboardInterrupt" in err
    assert 130 in outcomes  # some tries did land inside the run
