"""checksum.py and ``pythia-data checksum``: manifests in every style, verification, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.cli.app import cli
from pythia_data.errors import InputError, UsageError
from pythia_data.integrity.hashing import hash_file
from pythia_data.integrity.manifest import Manifest, known_manifest
from pythia_data.integrity.verify import checksum_files
from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parent.parent
_REF_NAME = "pythia_deduped_pile_idxmaps.shard_hashes.txt"
# Pythia's published hashes: ../shared/reference when present (CI), else the copy in tests/data
REFERENCE = next(p for p in (REPO.parent / "shared" / "reference" / _REF_NAME,
                             REPO / "tests" / "data" / _REF_NAME) if p.is_file())
PILE = "pile_0.87_deduped_text_document"
PILE_BIN_SHA = "0cd548efd15974d5cca78f9baddbd59220ca675535dcfc0c350087c79f504693"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def xxh(b: bytes) -> str:
    return xxhash.xxh3_128(b).hexdigest()


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    contents = {f"f{i}.bin": os.urandom(1000 * i + 7) for i in range(4)}
    for name, data in contents.items():
        (d / name).write_bytes(data)
    return d, contents


# -------------------------------------------------------------------- hashing


@settings(max_examples=15, deadline=None)
@given(data=st.binary(max_size=5000), read_size=st.integers(1, 3000))
def test_hash_file_matches_hashlib_and_xxhash(tmp_path_factory, data, read_size):
    p = tmp_path_factory.mktemp("h") / "x"
    p.write_bytes(data)
    seen = []
    assert hash_file(p, "sha256", read_size=read_size, progress=seen.append) == sha(data)
    assert sum(seen) == len(data)
    assert hash_file(p, "xxh3", read_size=read_size) == xxh(data)


def test_unknown_algorithm(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    with pytest.raises(UsageError):
        hash_file(tmp_path / "a", "md5")


# -------------------------------------------------------------------- manifests


def test_manifest_styles_all_parse_alike():
    a, b = sha(b"a"), sha(b"b")
    texts = {
        "sha256sum": f"{a}  one.bin\n{b}  two words.bin\n",
        "binary": f"{a} *one.bin\n{b} *two words.bin\n",
        "pythia": f"one.bin {a}\ntwo words.bin {b}\n",
        "bsd": f"SHA256 (one.bin) = {a}\nSHA256 (two words.bin) = {b}\n",
        "mixed+comments": f"# header\n\n{a}  ./some/dir/one.bin\ntwo words.bin {b}\n",
        "crlf upper": f"{a.upper()}  one.bin\r\n{b}  two words.bin\r\n",
    }
    for style, text in texts.items():
        m = Manifest.parse(text, style)
        assert {k: e.digest for k, e in m.entries.items()} == {"one.bin": a, "two words.bin": b}, style
        assert m.algorithms == {"sha256"}


def test_manifest_xxh3_entries():
    d = xxh(b"z")
    m = Manifest.parse(f"{d}  z.bin\nXXH128 (y.bin) = {d}\n")
    assert m.get("z.bin").algorithm == "xxh3"
    assert m.get("some/dir/y.bin", "xxh3").digest == d
    assert m.get("z.bin", "sha256") is None


@pytest.mark.parametrize(
    "text",
    ["justonetoken\n", "name.bin deadbeef\n", f"{'0' * 64}\n", f"a.bin {'0' * 64}\na.bin {'1' * 64}\n"],
)
def test_bad_manifest_lines(text):
    with pytest.raises(InputError):
        Manifest.parse(text, "m.txt")


def test_known_manifests_agree_with_reference_and_top_level_copy():
    shipped = REPO / "pythia_data" / "data"
    human = REPO / "checksums"
    names = sorted(p.name for p in shipped.iterdir() if p.suffix == ".sha256")
    assert names and names == sorted(p.name for p in human.iterdir() if p.suffix == ".sha256")
    for n in names:
        a = Manifest.load(shipped / n).entries
        b = Manifest.load(human / n).entries
        assert a == b, n
    known = known_manifest()
    ref = Manifest.load(REFERENCE)
    assert len(ref) == 84
    for name, entry in ref.entries.items():
        assert known.get(name) == entry
    assert known.get(f"{PILE}.bin").digest == PILE_BIN_SHA
    assert known.get(f"{PILE}-00082-of-00082.bin").digest.startswith("be207095")


# -------------------------------------------------------------------- checksum_files


def test_all_match(files):
    d, contents = files
    manifest = Manifest.parse("".join(f"{sha(v)}  {k}\n" for k, v in contents.items()))
    for jobs in (1, 2, 8):
        seen = []
        rep = checksum_files([d], manifest, jobs=jobs, progress=seen.append)
        assert rep.ok and rep.exit_code == 0
        assert sorted(r.status for r in rep.results) == ["ok"] * 4
        assert {r.name: r.digest for r in rep.results} == {k: sha(v) for k, v in contents.items()}
        assert sum(seen) == sum(len(v) for v in contents.values())


def test_mismatch_missing_unknown(files):
    d, contents = files
    lines = [f"{sha(v)}  {k}" for k, v in contents.items()]
    lines[2] = f"{sha(b'other')}  f2.bin"
    lines.append(f"{sha(b'gone')}  gone.bin")
    (d / "extra.txt").write_text("not in the manifest")
    manifest = Manifest.parse("\n".join(lines))
    rep = checksum_files([d], manifest)
    status = {r.name: r.status for r in rep.results}
    assert status == {
        "f0.bin": "ok", "f1.bin": "ok", "f2.bin": "mismatch", "f3.bin": "ok",
        "gone.bin": "missing", "extra.txt": "unknown",
    }
    assert not rep.ok and rep.exit_code == 1
    # naming only files: entries for other files are not "missing"
    rep = checksum_files([d / "f0.bin", d / "f1.bin"], manifest)
    assert rep.ok and len(rep.results) == 2


def test_named_absent_file(files):
    d, contents = files
    manifest = Manifest.parse(f"{sha(b'x')}  listed.bin\n")
    rep = checksum_files([d / "listed.bin"], manifest)
    assert [r.status for r in rep.results] == ["missing"]
    with pytest.raises(InputError, match="unlisted"):
        checksum_files([d / "unlisted.bin"], manifest)


def test_xxh3_algorithm_inferred_and_conflict(files):
    d, contents = files
    manifest = Manifest.parse("".join(f"{xxh(v)}  {k}\n" for k, v in contents.items()))
    rep = checksum_files([d], manifest)
    assert rep.algorithm == "xxh3" and rep.ok
    with pytest.raises(UsageError):
        checksum_files([d], manifest, algorithm="sha256")
    with pytest.raises(UsageError):
        checksum_files([d], None, jobs=0)


def test_known_names_looked_up_automatically(tmp_path):
    d = tmp_path / "pythia_deduped_pile_idxmaps"
    d.mkdir()
    (d / f"{PILE}-00005-of-00082.bin").write_bytes(b"not the real shard")
    rep = checksum_files([d])
    by = {r.name: r for r in rep.results}
    assert by[f"{PILE}-00005-of-00082.bin"].status == "mismatch"
    missing = [r.name for r in rep.results if r.status == "missing"]
    assert len(missing) == 82 and f"{PILE}-00000-of-00082.bin" in missing
    assert not rep.ok
    # a single named file: no "missing" for the rest of its set
    rep = checksum_files([d / f"{PILE}-00005-of-00082.bin"])
    assert [r.status for r in rep.results] == ["mismatch"]


# -------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_outputs(files, tmp_path):
    d, contents = files
    runner = CliRunner()
    man = tmp_path / "m.sha256"
    r = runner.invoke(cli, ["checksum", str(d), "--write-manifest", str(man), "-q"])
    assert r.exit_code == 0, r.output
    assert Manifest.load(man).entries["f1.bin"].digest == sha(contents["f1.bin"])
    r = runner.invoke(cli, ["checksum", str(d), "--expected", str(man), "-j", "2"])
    assert r.exit_code == 0, r.output
    assert f"{d / 'f3.bin'}: OK" in r.output
    # Pythia style manifest, one file flipped
    (tmp_path / "p.txt").write_text("".join(f"{k} {sha(v)}\n" for k, v in contents.items()))
    data = bytearray(contents["f2.bin"])
    data[5] ^= 1
    (d / "f2.bin").write_bytes(bytes(data))
    r = runner.invoke(cli, ["checksum", str(d), "-c", str(tmp_path / "p.txt"), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert doc["ok"] is False
    assert [f["name"] for f in doc["files"] if f["status"] == "mismatch"] == ["f2.bin"]
    # xxh3 round trip
    r = runner.invoke(cli, ["checksum", str(d), "-a", "xxh3", "--write-manifest", str(man), "-q",
                            "--force"])
    assert r.exit_code == 0
    assert Manifest.load(man).algorithms == {"xxh3"}
    r = runner.invoke(cli, ["checksum", str(d), "-c", str(man), "-q"])
    assert r.exit_code == 0
    # bad input -> 2
    assert runner.invoke(cli, ["checksum", str(d / "nope.bin")]).exit_code == 2
    assert runner.invoke(cli, ["checksum", str(d), "-j", "0"]).exit_code == 2
    assert runner.invoke(cli, ["checksum", str(d), "-c", str(tmp_path / "none.txt")]).exit_code == 2


def test_cli_subprocess_one_line_errors(files, tmp_path):
    d, contents = files
    bad = tmp_path / "bad.txt"
    bad.write_text("garbage line\n")
    p = subprocess.run([sys.executable, "-m", "pythia_data", "checksum", str(d), "-c", str(bad)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "bad.txt:1" in p.stderr and "Traceback" not in p.stderr
    man = tmp_path / "m.txt"
    man.write_text(f"{sha(b'zz')}  f0.bin\n")
    p = subprocess.run([sys.executable, "-m", "pythia_data", "checksum", str(d / "f0.bin"),
                        "-c", str(man)], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert p.returncode == 1
    assert "FAILED" in p.stdout and "f0.bin" in p.stderr
