"""Work units (issue 16): plan, completion records, resume, local executor, byte-identical
merges. Ray runs are in tests/test_jobs_ray.py (marked ``ray``)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pythia_data.cli import cli
from pythia_data.dataset import IndexedDataset, write_dataset
from pythia_data.errors import InputError, OutputError, UsageError
from pythia_data.jobs import (
    JobStore,
    LocalExecutor,
    parse_size,
    plan_dataset,
    plan_files,
    record_unit,
    run_units,
)
from pythia_data.jobs.plan import Unit
from pythia_data.tokenize import load_tokenizer
from pythia_data.tokenize.pipeline import detokenize, retokenize, tokenize_files
from pythia_data.tokenize.units import (
    detokenize_units,
    retokenize_units,
    tokenize_units,
    unit_batches,
    unit_documents,
)
from tests.conftest import subprocess_env

WORDS = ["hello", "world", "été", "中文", "12", "\n", " ", "naïve", "\u2028", "emoji😀"]


def _corpus(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            k = int(rng.integers(0, 40))
            text = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), k))
            fh.write(json.dumps({"text": text}, ensure_ascii=bool(rng.integers(0, 2))) + "\n")
    return path


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None, workers=1)


def _files(prefix):
    return open(prefix + ".bin", "rb").read(), open(prefix + ".idx", "rb").read()


def _records(done_dir) -> int:
    """The complete completion records in a job's ``done`` folder (a record being written
    is a ``.partial``)."""
    return len([n for n in os.listdir(done_dir) if n.endswith(".json")])


def _wait_for_records(proc, done_dir, n: int = 3, timeout: float = 120,
                      poll: float = 0.02) -> None:
    """Wait until the job ``proc`` runs has ``n`` complete records; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(done_dir) and _records(done_dir) >= n:
            break
        time.sleep(poll)
    assert proc.poll() is None, proc.communicate()


# --------------------------------------------------------------------------- planning


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"x")),
                      max_size=40),
       trailing=st.booleans(), unit=st.integers(1, 200))
def test_line_units_cover_the_file_and_cut_after_newlines(tmp_path_factory, lines, trailing,
                                                          unit):
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path = tmp_path_factory.mktemp("p") / "f.jsonl"
    path.write_bytes(data)
    inputs, units = plan_files([str(path)], unit)
    assert inputs[0].size == len(data)
    assert units[0].start == 0 and units[-1].end == len(data)
    for a, b in zip(units, units[1:]):
        assert a.end == b.start
        assert data[a.end - 1 : a.end] == b"\n"  # every inner cut follows a newline
    assert b"".join(data[u.start:u.end] for u in units) == data
    assert [u.id for u in units] == list(range(len(units)))
    assert plan_files([str(path)], unit)[1] == units  # deterministic


def test_zst_and_txt_are_whole_units(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x" * 1000)
    b = tmp_path / "b.jsonl.zst"
    b.write_bytes(b"\0" * 1000)
    _, units = plan_files([str(a), str(b)], 10)
    assert [(u.kind, u.start, u.end) for u in units] == [("file", 0, 1000), ("file", 0, 1000)]


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 20), min_size=0, max_size=30), unit=st.integers(1, 80))
def test_document_units_partition_the_documents(sizes, unit):
    n_seq = [1 if s else int(s == 0 and len(sizes) % 2) for s in sizes]  # some docs empty
    seq_sizes = [s for s, k in zip(sizes, n_seq) for _ in range(k)]
    doc_idx = np.concatenate([[0], np.cumsum(n_seq)]).astype(np.int64)
    pointers = (np.concatenate([[0], np.cumsum(seq_sizes)[:-1]]) * 2).astype(np.int64) \
        if seq_sizes else np.zeros(0, np.int64)
    units = plan_dataset("p", doc_idx, pointers, 2 * sum(seq_sizes), unit)
    assert units[0].start == 0 and units[-1].end == max(len(sizes), 0)
    for a, b in zip(units, units[1:]):
        assert a.end == b.start and a.end > a.start
    assert sum(u.weight for u in units) == 2 * sum(seq_sizes)


def test_parse_size():
    assert parse_size("64M") == 64 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size("123") == 123
    for bad in ("", "abc", "0", "-5M"):
        with pytest.raises(UsageError):
            parse_size(bad)


# --------------------------------------------------------------------------- byte identity


@pytest.mark.parametrize("unit_bytes", [1, 700, 5000, 10 << 20])
def test_tokenize_units_match_one_process(tmp_path, tok, unit_bytes):
    src = [str(_corpus(tmp_path / "a.jsonl", 120)), str(_corpus(tmp_path / "b.jsonl", 30, 1))]
    (tmp_path / "c.txt").write_text("a whole\r\nfile")
    src.append(str(tmp_path / "c.txt"))
    one = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    out = str(tmp_path / "many_text_document")
    ex = LocalExecutor(2, mode="thread")
    summary = tokenize_units(src, out, tok, ex, append_eod=True, unit_bytes=unit_bytes)
    assert _files(out) == _files(one)
    assert summary["documents"] == IndexedDataset(one).num_documents
    assert not os.path.exists(out + ".job")  # removed after the merge
    if unit_bytes == 1:
        assert summary["units"] == 150 + 1  # one unit per line, one for the .txt


def test_units_of_empty_inputs_and_empty_documents(tmp_path, tok):
    (tmp_path / "e.jsonl").write_bytes(b"")
    (tmp_path / "f.jsonl").write_text('{"text": ""}\n\n{"text": ""}\n')
    files = [str(tmp_path / "e.jsonl"), str(tmp_path / "f.jsonl")]
    out = str(tmp_path / "o")
    s = tokenize_units(files, out, tok, LocalExecutor(1), unit_bytes=3)
    assert s["documents"] == 0 and s["skipped_empty"] == 2 and s["warnings"]
    ds = IndexedDataset(out)
    assert ds.num_documents == 0 and ds.bin_bytes == 0


@pytest.mark.slow
def test_detokenize_and_retokenize_units_match_one_process(tmp_path, tok):
    src = str(_corpus(tmp_path / "a.jsonl", 80))
    data = tokenize_files([src], tmp_path / "d", tok, append_eod=True)["output"]
    detokenize(data, tok, tmp_path / "one.jsonl")
    retokenize(data, tok, tok, tmp_path / "re_one")
    for unit_bytes in (200, 1 << 30):
        ex = LocalExecutor(3, mode="thread")
        detokenize_units(data, tok, tmp_path / "many.jsonl", ex, unit_bytes=unit_bytes)
        assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
        retokenize_units(data, tok, tok, tmp_path / "re_many", ex, unit_bytes=unit_bytes)
        assert _files(str(tmp_path / "re_many")) == _files(str(tmp_path / "re_one"))


def test_documents_units_keep_documents_without_sequences(tmp_path, tok):
    from pythia_data.dataset import DatasetBuilder

    with DatasetBuilder(tmp_path / "holes", np.uint16) as b:
        for k in range(30):
            if k % 4:
                b.add_item(np.array([1000 + k, tok.eod_id], np.uint16))
            b.end_document()
    prefix = str(tmp_path / "holes")
    retokenize(prefix, tok, tok, tmp_path / "one")
    retokenize_units(prefix, tok, tok, tmp_path / "many", LocalExecutor(1), unit_bytes=8)
    assert _files(str(tmp_path / "many")) == _files(str(tmp_path / "one"))


def test_error_in_a_later_unit_names_the_files_line(tmp_path, tok):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": f"line {i}"}) for i in range(200)]
    lines[150] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    _, units = plan_files([str(path)], 500)
    assert len(units) > 3
    with pytest.raises(InputError, match=r"bad\.jsonl:151: not valid JSON"):
        for unit in units:
            list(unit_documents(unit))


# --------------------------------------------------------------------------- resume


def _flaky(fail_ids, fn, unit):
    if unit.id in fail_ids:
        raise KeyboardInterrupt  # like Ctrl-C in the middle of the run
    return fn(unit)


def test_rerun_after_interruption_does_only_the_missing_units(tmp_path, tok, monkeypatch):
    src = [str(_corpus(tmp_path / "a.jsonl", 300))]
    one = tokenize_files(src, tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    import pythia_data.tokenize.units as tu

    real = tu._tokenize_unit
    monkeypatch.setattr(tu, "_tokenize_unit", lambda ctx, unit: _flaky({5}, partial(real, ctx),
                                                                         unit))
    with pytest.raises(KeyboardInterrupt):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
    done = sorted(os.listdir(out + ".job/done"))
    assert done == [f"u{k:05d}.json" for k in range(5)]
    assert not os.path.exists(out + ".bin")
    monkeypatch.setattr(tu, "_tokenize_unit", real)
    s = tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
    assert s["units_resumed"] == 5 and s["units_run"] == s["units"] - 5
    assert _files(out) == _files(one)


def test_a_job_reads_each_completion_record_once_before_its_units_run(tmp_path, tok,
                                                                       monkeypatch):
    """``JobStore.pending()`` reads every completion record; a resumed Pile-sized job has
    ~13,000. tokenize, retokenize and detokenize read them once before the units run (they
    read them three times: the count of units left, the merger's list of units fresh in this
    run, and ``run_units``); ``run_units`` reads each record once more after."""
    import pythia_data.tokenize.units as tu
    from pythia_data.jobs.store import JobStore

    src = [str(_corpus(tmp_path / "a.jsonl", 300))]
    data = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    calls = []
    real_pending = JobStore.pending

    def counted(self):
        calls.append(self.folder)
        return real_pending(self)

    monkeypatch.setattr(JobStore, "pending", counted)
    real = tu._tokenize_unit
    monkeypatch.setattr(tu, "_tokenize_unit",
                        lambda ctx, unit: _flaky({3}, partial(real, ctx), unit))
    out = str(tmp_path / "o")
    with pytest.raises(KeyboardInterrupt):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000, append_eod=True)
    monkeypatch.setattr(tu, "_tokenize_unit", real)
    calls.clear()
    s = tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000, append_eod=True)
    assert s["units_resumed"] == 3 and len(calls) == 1
    assert _files(out) == _files(data)
    for job in (lambda: retokenize_units(data, tok, tok, tmp_path / "re", LocalExecutor(1),
                                         unit_bytes=1000),
                lambda: detokenize_units(data, tok, tmp_path / "de.jsonl", LocalExecutor(1),
                                         unit_bytes=1000)):
        calls.clear()
        job()
        assert len(calls) == 1


def test_changed_input_unit_size_or_options_are_refused(tmp_path, tok, monkeypatch):
    src = str(_corpus(tmp_path / "a.jsonl", 100))
    out = str(tmp_path / "o")
    import pythia_data.tokenize.units as tu

    real = tu._tokenize_unit
    monkeypatch.setattr(tu, "_tokenize_unit", lambda ctx, unit: _flaky({2}, partial(real, ctx),
                                                                         unit))
    with pytest.raises(KeyboardInterrupt):
        tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=1000)
    monkeypatch.setattr(tu, "_tokenize_unit", real)
    with pytest.raises(UsageError, match="planned as .* units, this run plans"):
        tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=2000)
    with pytest.raises(UsageError, match="other options \\(append_eod differ\\)"):
        tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=1000, append_eod=True)
    st_ = os.stat(src)
    os.utime(src, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    with pytest.raises(UsageError, match="a.jsonl changed since the job was planned"):
        tokenize_units([src], out, tok, LocalExecutor(1), unit_bytes=1000)
    # the CLI says it in one line, exit code 2
    r = CliRunner().invoke(cli, ["tokenize", src, "-o", str(tmp_path / "o_"), "-q",
                                 "--job-dir", out + ".job", "--unit-size", "1000"])
    assert r.exit_code == 2 and "changed since the job was planned" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_damaged_part_is_caught_at_the_merge(tmp_path, tok):
    src = [str(_corpus(tmp_path / "a.jsonl", 100))]
    out = str(tmp_path / "o")
    tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000, keep_job=True)
    part = tmp_path / "o.job" / "parts" / "u00001.bin"
    data = bytearray(part.read_bytes())
    data[0] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(InputError, match="u00001.bin changed after unit 1 finished"):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)


def test_a_damaged_part_found_by_the_merge_thread_stops_the_run(tmp_path, tok, monkeypatch):
    """The parts are appended by the merge thread while units still run: a part of an
    earlier run found damaged there ends the run at the next finished unit (not after
    every unit), with no output."""
    import pythia_data.tokenize.units as tu

    src = [str(_corpus(tmp_path / "a.jsonl", 400))]
    out = str(tmp_path / "o")
    s = tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000, keep_job=True)
    os.unlink(out + ".bin")
    os.unlink(out + ".idx")
    n = s["units"]
    assert n > 20
    done = tmp_path / "o.job" / "done"
    for name in sorted(os.listdir(done))[1:]:  # unit 0 stays done, the rest to redo
        os.unlink(done / name)
    part = tmp_path / "o.job" / "parts" / "u00000.bin"
    damaged = bytearray(part.read_bytes())
    damaged[0] ^= 1  # same size, other bytes
    part.write_bytes(bytes(damaged))
    ran = []
    real = tu._tokenize_unit

    def slow_unit(ctx, unit):
        ran.append(unit.id)
        time.sleep(0.05)  # time for the merge thread to check unit 0's part
        return real(ctx, unit)

    monkeypatch.setattr(tu, "_tokenize_unit", slow_unit)
    with pytest.raises(InputError, match="u00000.bin changed after unit 0 finished"):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
    assert len(ran) < n - 1 - 5
    assert not os.path.exists(out + ".bin") and not os.path.exists(out + ".idx")


def test_two_drivers_of_one_job_do_not_mix(tmp_path):
    inputs, units = plan_files([str(_corpus(tmp_path / "a.jsonl", 10))], 100)
    with JobStore(tmp_path / "j", "t", {}, inputs, units):
        with pytest.raises(OutputError, match="another pythia-data"):
            JobStore(tmp_path / "j", "t", {}, inputs, units)


@pytest.mark.slow
def test_driver_killed_then_rerun_does_only_missing_units(tmp_path, tok):
    """kill -9 of the CLI mid-job; the rerun skips the units recorded as done."""
    src = str(_corpus(tmp_path / "a.jsonl", 3000))
    one = tokenize_files([src], tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    args = [sys.executable, "-m", "pythia_data", "tokenize", src, "-o", out, "-q",
            "--workers", "1", "--unit-size", "2k", "--json"]
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    done_dir = out + "_text_document.job/done"
    _wait_for_records(proc, done_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _records(done_dir)
    r = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["units_resumed"] >= finished >= 3
    assert s["units_run"] == s["units"] - s["units_resumed"]
    assert _files(out + "_text_document") == _files(one)


# --------------------------------------------------------------------------- local executor


def _work(marker_dir, unit):
    """A unit that kills its own worker process (kill -9) the first time it runs unit 1."""
    marker = os.path.join(marker_dir, f"ran-{unit.id}")
    first = not os.path.exists(marker)
    with open(marker, "a") as fh:
        fh.write("x")
    if unit.id == 1 and first:
        os.kill(os.getpid(), signal.SIGKILL)
    return unit.id * 10


def _bad_input(unit):
    raise InputError(f"unit {unit.id}: bad input")


def _units(n):
    return [Unit(k, "file", f"/x/{k}", 0, 1, 1) for k in range(n)]


@pytest.mark.slow
def test_process_worker_killed_mid_unit_is_retried(tmp_path, monkeypatch):
    import pythia_data.jobs.executors as jex

    terminated = []
    real = jex._terminate
    monkeypatch.setattr(jex, "_terminate", lambda pool: (terminated.append(pool), real(pool)))
    seen = []
    ex = LocalExecutor(2, mode="process")
    out = ex.run(_units(6), partial(_work, str(tmp_path)), progress=seen.append)
    assert out == [k * 10 for k in range(6)]
    assert sum(seen) == 6
    assert (tmp_path / "ran-1").read_text() == "xx"  # killed once, run again
    # the broken pool's workers were stopped before its shutdown waited for them (a worker
    # that a submit racing the break started would otherwise keep shutdown waiting)
    assert len(terminated) == 1


def test_a_pool_found_broken_when_the_next_unit_is_submitted_is_replaced():
    """A worker process that dies while the driver submits the next unit makes ``submit``
    itself raise BrokenProcessPool (before any future reports it): the units are run again
    in a new pool, as when a future reports it, instead of the whole job failing."""
    from concurrent.futures.process import BrokenProcessPool

    pools = []

    class Breaks(LocalExecutor):
        def _pool(self, n, module):
            pool = super()._pool(n, module)
            pools.append(pool)
            if len(pools) == 1:
                submit, calls = pool.submit, []

                def flaky(*args, **kwargs):
                    calls.append(1)
                    if len(calls) == 3:
                        raise BrokenProcessPool("a child process terminated abruptly")
                    return submit(*args, **kwargs)

                pool.submit = flaky
            return pool

    assert Breaks(2, mode="thread").run(_units(6), _times_ten) == [k * 10 for k in range(6)]
    assert len(pools) == 2


def _times_ten(unit):
    return unit.id * 10


def _fail_or_wait(log, unit):
    """Unit 0 fails at once with a package error; the others run batch after batch (as a
    tokenize unit does) until a cancel point stops them, or give up after 60 s."""
    from pythia_data.cancel import UnitCancelled, cancel_point

    if unit.id == 0:
        time.sleep(0.2)  # the other units are running by now
        raise InputError("unit 0: bad input")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            cancel_point()
            time.sleep(0.01)  # one batch
    except UnitCancelled:
        log.append(("cancelled", unit.id))
        raise
    log.append(("ran out", unit.id))
    return unit.id


def test_thread_workers_stop_at_their_next_batch_when_the_run_ends():
    """Threads cannot be killed: a run that ends early (a unit's error here, Ctrl-C alike)
    sets its stop event, and each unit still running raises UnitCancelled at its next
    cancel point instead of working on (and keeping the command waiting) to the end."""
    log = []
    t0 = time.monotonic()
    with pytest.raises(InputError, match="unit 0: bad input"):
        LocalExecutor(3, mode="thread").run(_units(3), partial(_fail_or_wait, log))
    assert time.monotonic() - t0 < 30
    assert sorted(log) == [("cancelled", 1), ("cancelled", 2)]
    # outside a stopped run's worker thread a cancel point does nothing
    from pythia_data.cancel import cancel_point, in_worker_thread

    cancel_point()
    assert not in_worker_thread()
    assert LocalExecutor(2, mode="thread").run(_units(3), _unit_id_checked) == [0, 1, 2]


def _unit_id_checked(unit):
    from pythia_data.cancel import cancel_point, in_worker_thread

    assert in_worker_thread()
    cancel_point()  # the run was not stopped: nothing happens
    return unit.id


@pytest.mark.slow  # ~5 s of two processes tokenizing: .ci/run runs it (pytest -m slow)
def test_cli_ctrl_c_with_thread_workers_stops_promptly_and_the_rerun_resumes(tmp_path, tok):
    """SIGINT to `tokenize --workers 2` (worker threads, the default) mid-job: exit 130
    within seconds, no output under the final names, the finished units' records kept;
    the rerun does only the rest and writes the single-process bytes. (~1,400 units of
    1 KB, ~2 s of work: a loaded machine that delays the SIGINT by a second still finds
    the job running.)"""
    src = str(_corpus(tmp_path / "a.jsonl", 10000))
    one = tokenize_files([src], tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    args = [sys.executable, "-m", "pythia_data", "tokenize", src, "-o", out, "-q",
            "--workers", "2", "--unit-size", "1k", "--json"]
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    done_dir = out + "_text_document.job/done"
    _wait_for_records(proc, done_dir, poll=0.01)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert not os.path.exists(out + "_text_document.bin")
    assert not os.path.exists(out + "_text_document.idx")
    finished = _records(done_dir)
    r = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["units_resumed"] == finished >= 3
    assert _files(out + "_text_document") == _files(one)


@pytest.mark.slow
def test_cli_local_mode_process_matches_threads_and_needs_the_local_executor(tmp_path, tok):
    src = str(_corpus(tmp_path / "a.jsonl", 300))
    one = tokenize_files([src], tmp_path / "one", tok, append_eod=True)["output"]
    r = subprocess.run([sys.executable, "-m", "pythia_data", "tokenize", src, "-o",
                        str(tmp_path / "p"), "-q", "--append-eod", "--workers", "2",
                        "--local-mode", "process", "--unit-size", "3k", "--json"],
                       env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["units"] > 2 and s["workers"] == 2
    assert _files(str(tmp_path / "p_text_document")) == _files(one)
    bad = CliRunner().invoke(cli, ["tokenize", src, "-o", str(tmp_path / "r"),
                                   "--executor", "ray", "--local-mode", "process"])
    assert bad.exit_code == 2
    assert "--local-mode needs --executor local" in bad.output


def test_package_errors_are_not_retried(tmp_path):
    for ex in (LocalExecutor(1), LocalExecutor(2, mode="thread")):
        with pytest.raises(InputError, match="bad input"):
            ex.run(_units(3), _bad_input)


def _always_fails(unit):
    raise RuntimeError("flaky disk")


def test_other_errors_are_retried_then_reported():
    with pytest.raises(OutputError, match=r"unit 0 \(/x/0\) failed 3 times; last: RuntimeError"):
        LocalExecutor(1, retries=2).run(_units(1), _always_fails)


def test_run_units_records_and_progress(tmp_path):
    files = [str(_corpus(tmp_path / "a.jsonl", 50))]
    inputs, units = plan_files(files, 300)
    calls = []

    def progress(desc, total, unit):
        import contextlib

        @contextlib.contextmanager
        def bar():
            calls.append((desc, total, unit))
            yield lambda n: calls.append(n)
        return bar()

    def fn(store, unit):
        path = os.path.join(store.folder, "parts", unit.name + ".txt")
        with open(path, "w") as fh:
            fh.write(str(unit.id))
        return record_unit(store.folder, unit, store.inputs_of(unit), [path], {"n": unit.id})

    with JobStore(tmp_path / "j", "demo", {"a": 1}, inputs, units) as store:
        recs = run_units(store, LocalExecutor(1), partial(fn, store), progress=progress)
    assert [r["result"]["n"] for r in recs] == list(range(len(units)))
    assert calls[0] == ("units", os.path.getsize(files[0]), "B")
    assert sum(calls[1:]) == os.path.getsize(files[0])
    rec = json.loads((tmp_path / "j" / "done" / "u00000.json").read_text())
    assert rec["inputs"][0]["size"] == os.path.getsize(files[0])
    assert len(rec["outputs"]["u00000.txt"]["xxh3"]) == 32


def test_cli_tokenize_with_workers_and_units_matches_one_process(tmp_path, tok):
    src = str(_corpus(tmp_path / "a.jsonl", 200))
    one = tokenize_files([src], tmp_path / "one", tok, append_eod=True)["output"]
    r = CliRunner().invoke(cli, ["tokenize", src, "-o", str(tmp_path / "cli"), "--append-eod",
                                 "--unit-size", "3k", "--workers", "1", "--json", "-q"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["units"] > 3
    assert _files(str(tmp_path / "cli_text_document")) == _files(one)
    r = CliRunner().invoke(cli, ["tokenize", src, "-o", str(tmp_path / "x"), "--unit-size",
                                 "zero"])
    assert r.exit_code == 2 and "not a size" in r.output
    r = CliRunner().invoke(cli, ["tokenize", src, "-o", str(tmp_path / "x"), "--ray-address",
                                 "127.0.0.1:1"])
    assert r.exit_code == 2 and "--ray-address needs --executor ray" in r.output


def test_write_dataset_helper_still_works(tmp_path):
    # the merge reads parts with IndexedDataset: a part of zero documents is valid
    prefix = write_dataset(tmp_path / "z", [], dtype=np.uint16)
    assert IndexedDataset(prefix).num_documents == 0


# --------------------------------------------------------------------------- checksum


def test_checksum_units_match_and_resume(tmp_path, monkeypatch):
    import hashlib

    from pythia_data.jobs import checksum as jc

    files = []
    for k in range(5):
        p = tmp_path / f"f{k}.bin"
        p.write_bytes(bytes([k]) * (1000 * k + 1))
        files.append(str(p))
    want = [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files]
    real = jc._hash_unit
    monkeypatch.setattr(jc, "_hash_unit", lambda *a: _flaky({3}, partial(real, *a[:-1]), a[-1]))
    with pytest.raises(KeyboardInterrupt):
        jc.hash_files(files, "sha256", LocalExecutor(1), job_dir=tmp_path / "job")
    assert len(os.listdir(tmp_path / "job" / "done")) == 3
    calls = []
    monkeypatch.setattr(jc, "_hash_unit", lambda *a: calls.append(a[-1].id) or real(*a))
    got = jc.hash_files(files, "sha256", LocalExecutor(2, mode="thread"),
                        job_dir=tmp_path / "job")
    assert got == want and sorted(calls) == [3, 4]
    assert not (tmp_path / "job").exists()
    assert jc.hash_files(files, "sha256", LocalExecutor(2, mode="thread")) == want


def test_checksum_cli_with_a_job_dir_reports_the_same(tmp_path):
    for k in range(3):
        (tmp_path / f"f{k}.bin").write_bytes(bytes([k]) * 100)
    plain = CliRunner().invoke(cli, ["checksum", str(tmp_path), "-q"])
    units = CliRunner().invoke(cli, ["checksum", str(tmp_path), "-q", "--job-dir",
                                     str(tmp_path / ".job")])
    assert plain.exit_code == units.exit_code == 0, units.output
    assert plain.output == units.output and plain.output.count("  ") == 3


def test_a_bom_is_skipped_only_at_the_start_of_the_file(tmp_path, tok):
    path = tmp_path / "bom.jsonl"
    lines = [json.dumps({"text": f"doc {i} é"}) for i in range(60)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    one = tokenize_files([str(path)], tmp_path / "one", tok)["output"]
    out = str(tmp_path / "many")
    s = tokenize_units([str(path)], out, tok, LocalExecutor(1), unit_bytes=50)
    assert s["units"] > 10 and s["documents"] == 60
    assert _files(out) == _files(one)


def test_an_existing_output_is_refused_before_any_work(tmp_path, tok):
    src = [str(_corpus(tmp_path / "a.jsonl", 20))]
    out = str(tmp_path / "o")
    tokenize_units(src, out, tok, LocalExecutor(1))
    with pytest.raises(OutputError, match="already exists"):
        tokenize_units(src, out, tok, LocalExecutor(1), overwrite=False)
    assert not os.path.exists(out + ".job")


def test_executor_choice_and_resources(monkeypatch):
    from pythia_data.cli.options import make_job_executor
    from pythia_data.jobs import RayExecutor, make_executor

    assert make_job_executor("local", None, None, gpu=True).workers == 1  # one GPU here
    assert make_job_executor("local", 3, None).workers == 3
    with pytest.raises(UsageError, match="unknown executor"):
        make_executor("slurm")
    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        make_executor("local", ray_address="127.0.0.1:6379")
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    with pytest.raises(UsageError, match=r"pip install 'pythia-data\[ray\]'"):
        make_executor("ray")
    r = CliRunner().invoke(cli, ["checksum", __file__, "--executor", "ray", "-q"])
    assert r.exit_code == 2 and "pythia-data[ray]" in r.output
    ex = RayExecutor("127.0.0.1:1", 2, num_gpus=1)  # what --backend cuda asks of each task
    assert (ex.num_cpus, ex.num_gpus) == (1, 1)


# --------------------------------------------------------------------------- overlapped reading


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(0, 50), max_size=60), max_docs=st.integers(1, 20),
       max_chars=st.integers(1, 300), ramp=st.integers(1, 70))
def test_batches_ramp_up_and_keep_every_document_in_order(lengths, max_docs, max_chars,
                                                          ramp):
    from pythia_data.tokenize.pipeline import _batches

    docs = ["x" * n for n in lengths]
    batches = list(_batches(iter(docs), max_docs, max_chars, ramp))
    assert [d for b in batches for d in b] == docs
    # oracle: the limits start at 1/ramp of the full ones and double after every batch
    d_lim, c_lim = max(1, max_docs // ramp), max(1, max_chars // ramp)
    for k, batch in enumerate(batches):
        assert batch
        chars = sum(map(len, batch))
        before = chars - len(batch[-1])
        # nothing reached a limit before the batch's last document...
        assert len(batch) - 1 < d_lim and before < c_lim
        # ...and every batch but the last ends with the document that reaches one
        if k < len(batches) - 1:
            assert len(batch) >= d_lim or chars >= c_lim
        d_lim, c_lim = min(max_docs, 2 * d_lim), min(max_chars, 2 * c_lim)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(unit=st.sampled_from([1, 2, 37, 400, 3000]), max_docs=st.integers(1, 9),
       max_chars=st.integers(1, 500), ramp=st.sampled_from([1, 4, 64]))
def test_parts_of_units_with_any_batching_merge_to_one_process_bytes(
        tmp_path_factory, tok, unit, max_docs, max_chars, ramp):
    """Each unit read by the reader thread in ramped batches (batch edges inside units and
    across unit edges, units of 1 byte): the parts concatenate to the one-process bytes."""
    from pythia_data.tokenize import pipeline as pl

    tmp = tmp_path_factory.mktemp("b")
    src = str(_corpus(tmp / "a.jsonl", 60, 3))
    one = tokenize_files([src], tmp / "one", tok, append_eod=True)["output"]
    _, units = plan_files([src], unit)
    if unit == 1:
        assert len(units) == 60
    tokens, docs = b"", 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pl, "RAMP", ramp)
        for u in units:
            prefix = str(tmp / u.name)
            pl.write_part(unit_documents(u), tok, prefix, append_eod=True, durable=False,
                          batch_documents=max_docs, batch_chars=max_chars)
            tokens += open(prefix + ".bin", "rb").read()
            docs += IndexedDataset(prefix).num_documents
    assert tokens == _files(one)[0]
    assert docs == IndexedDataset(one).num_documents


@pytest.mark.slow
def test_a_units_batches_ramp_up_then_down_and_keep_every_document(tmp_path):
    """A text unit's batches start small, double, and shrink again towards the unit's
    end (its last batch's write is waited for: it should be a small one); the documents
    are the unit's, in order, whatever the sizes."""
    src = str(_corpus(tmp_path / "a.jsonl", 24_000, 5))
    _, units = plan_files([src], 4 << 20)
    unit = units[0]
    assert unit.end - unit.start > 1_500_000
    batches = list(unit_batches(unit, batch_documents=1 << 20, batch_chars=1 << 20))
    sizes = [int(b.data.size) for b in batches]
    top = sizes.index(max(sizes))
    assert max(sizes) >= 256 << 10
    assert 0 < top < len(sizes) - 2  # up, then down
    assert sizes[-1] <= max(sizes) // 3
    texts = [bytes(b.data[b.offsets[i]:b.offsets[i + 1]]).decode()
             for b in batches for i in range(b.documents)]
    assert texts == [d.text for d in unit_documents(unit)]


@settings(max_examples=200, deadline=None)
@given(max_bytes=st.integers(1, 1 << 24), ramp=st.integers(1, 512),
       total=st.one_of(st.none(), st.integers(0, 1 << 26)), seed=st.integers(0, 2**32 - 1))
def test_ramp_limits_follow_their_rule(max_bytes, ramp, total, seed):
    """Oracle of _Ramp: double up to the maximum after each batch; with a known total,
    never above half of what is left to read, never below the first size."""
    from pythia_data.tokenize.pipeline import _Ramp

    rng = np.random.default_rng(seed)
    r = _Ramp(4096, max_bytes, ramp, total)
    floor = max(1, max_bytes // ramp)
    up, left = floor, total
    for _ in range(30):
        want = up if left is None else min(up, max(floor, left // 2))
        assert r.bytes == want
        assert floor <= r.bytes <= max(max_bytes, floor)
        if rng.integers(0, 2):
            n = int(rng.integers(0, 2 * want + 2))
            r.consumed(n)
            left = None if left is None else left - n
        else:
            r.step()
            up = min(max_bytes, 2 * up)


class _InterruptingTokenizer:
    """The tokenizer, but Ctrl-C arrives in its encode call number ``at`` (``encode_flat``,
    ``encode_utf8_flat``, or ``encode_utf8_documents``, which the tokenize reader's batches
    use; the reader thread is then reading ahead)."""

    def __init__(self, tok, at):
        self._tok, self._at, self.calls = tok, at, 0

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def encode_flat(self, texts):
        self.calls += 1
        if self.calls == self._at:
            raise KeyboardInterrupt
        return self._tok.encode_flat(texts)

    def encode_utf8_flat(self, data, offsets, **kwargs):
        self.calls += 1
        if self.calls == self._at:
            raise KeyboardInterrupt
        return self._tok.encode_utf8_flat(data, offsets, **kwargs)

    def encode_utf8_documents(self, data, offsets, **kwargs):
        self.calls += 1
        if self.calls == self._at:
            raise KeyboardInterrupt
        return self._tok.encode_utf8_documents(data, offsets, **kwargs)


def _reader_threads():
    """The tokenize writer's helper threads still alive (its reader and its writer)."""
    import threading

    return [t for t in threading.enumerate()
            if t.name in ("pythia-data-reader", "pythia-data-writer") and t.is_alive()]


def test_ctrl_c_during_the_overlap_leaves_no_thread_and_resumes(tmp_path, tok, monkeypatch):
    import pythia_data.tokenize.units as tu
    from pythia_data.tokenize import pipeline as pl

    # first batches of 1 document, then doubling
    monkeypatch.setattr(pl, "RAMP", 1 << 20)
    monkeypatch.setattr(tu, "UNIT_RAMP", 1 << 20)
    src = [str(_corpus(tmp_path / "a.jsonl", 600))]
    one = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    out = str(tmp_path / "o")
    # units of ~8 KB: a few ramped batches each; Ctrl-C in the middle of the 4th unit
    n_units = len(plan_files(src, 8000)[1])
    assert n_units > 4
    calls_per_unit = []
    for u in plan_files(src, 8000)[1][:4]:
        counter = _InterruptingTokenizer(tok, at=-1)
        pl.write_part(unit_batches(u), counter, str(tmp_path / "probe"), durable=False)
        calls_per_unit.append(counter.calls)
    assert calls_per_unit[3] >= 2  # the overlap is in use inside the unit
    at = sum(calls_per_unit[:3]) + 2
    with pytest.raises(KeyboardInterrupt):
        tokenize_units(src, out, _InterruptingTokenizer(tok, at), LocalExecutor(1),
                       append_eod=True, unit_bytes=8000)
    assert _reader_threads() == []
    assert not os.path.exists(out + ".bin") and not os.path.exists(out + ".idx")
    done = sorted(os.listdir(out + ".job/done"))
    assert done == [f"u{k:05d}.json" for k in range(3)]
    s = tokenize_units(src, out, tok, LocalExecutor(1), append_eod=True, unit_bytes=8000)
    assert s["units_resumed"] == 3 and s["units_run"] == n_units - 3
    assert _files(out) == _files(one)
    assert _reader_threads() == []


# --------------------------------------------------------------------------- workers started early


def _pid_of_worker(unit):
    return os.getpid()


def test_workers_started_ahead_run_the_units_and_close_stops_them(tmp_path):
    ex = LocalExecutor(2, mode="process")
    ex.start("pythia_data.tokenize.units")
    procs = dict(ex._started._processes)
    deadline = time.monotonic() + 60
    while len(procs) < 2 and time.monotonic() < deadline:  # spawned as the no-ops arrive
        time.sleep(0.02)
        procs = dict(ex._started._processes)
    assert len(procs) == 2
    pids = ex.run(_units(6), _pid_of_worker)
    assert set(pids) <= set(procs) and os.getpid() not in pids
    assert ex._started is None  # run() took the pool (and shut it down)
    assert all(not p.is_alive() for p in procs.values())
    # started but never run: close() (leaving the with block) stops the processes
    with LocalExecutor(2, mode="process") as ex2:
        ex2.start()
        ex2._started.submit(os.getpid).result(timeout=60)
        early = list(ex2._started._processes.values())
    assert ex2._started is None and early
    assert all(not p.is_alive() for p in early)
    # threads and one worker start nothing; one worker runs the units in this process
    threads = LocalExecutor(2, mode="thread")
    threads.start("pythia_data.tokenize.units")
    assert threads._started is None
    one = LocalExecutor(1)
    one.start("pythia_data.tokenize.units")
    assert one._started is None
    assert one.run(_units(2), _pid_of_worker) == [os.getpid()] * 2


def test_cli_tokenize_with_two_workers_started_early_matches_one_process(tmp_path, tok):
    src = str(_corpus(tmp_path / "a.jsonl", 300))
    one = tokenize_files([src], tmp_path / "one", tok, append_eod=True)["output"]
    r = subprocess.run([sys.executable, "-m", "pythia_data", "tokenize", src, "-o",
                        str(tmp_path / "cli"), "-q", "--append-eod", "--workers", "2",
                        "--unit-size", "3k", "--json"], env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["units"] > 2 and s["workers"] == 2
    assert _files(str(tmp_path / "cli_text_document")) == _files(one)


def test_a_worker_that_cannot_start_prints_one_line_not_a_traceback():
    """The fork server imports jobs.warm; a worker forked from it that fails while it starts
    (the driver exiting on Ctrl-C unlinks the pool's semaphores mid-handshake: the worker's
    unpickling raises FileNotFoundError) prints one line, not a traceback."""
    code = (
        "import pythia_data.jobs.warm, sys\n"
        "try:\n"
        "    raise FileNotFoundError(2, 'No such file or directory')\n"
        "except FileNotFoundError:\n"
        "    sys.excepthook(*sys.exc_info())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "pythia-data: a worker process did not start "
        "(FileNotFoundError: [Errno 2] No such file or directory)"]


@pytest.mark.parametrize("after_commit", [True, False])
def test_ctrl_c_around_the_merge_commit(tmp_path, tok, monkeypatch, after_commit):
    """A Ctrl-C landing just after the merge committed the dataset still removes the job
    folder (the job is done: no litter beside a complete dataset); one landing before the
    commit keeps it, and the rerun then only merges."""
    import pythia_data.tokenize.units as tu

    src = [str(_corpus(tmp_path / "a.jsonl", 120))]
    one = tokenize_files(src, tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")
    real = tu.merge_dataset_parts

    def merge_then_ctrl_c(*args, **kwargs):
        if after_commit:
            real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tu, "merge_dataset_parts", merge_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
    assert os.path.exists(out + ".job") is not after_commit
    assert os.path.exists(out + ".bin") is after_commit
    monkeypatch.setattr(tu, "merge_dataset_parts", real)
    if not after_commit:
        s = tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
        assert s["units_run"] == 0
        assert not os.path.exists(out + ".job")
    for suffix in (".bin", ".idx"):
        with open(out + suffix, "rb") as a, open(one + suffix, "rb") as b:
            assert a.read() == b.read()


# --------------------------------------------------------------------------- merging while running


class _OrderedExecutor(LocalExecutor):
    """Runs the units in the driver in a given order (a permutation of their positions),
    calling ``progress`` after each, like a pool whose units finish out of order."""

    def __init__(self, order, after=None):
        super().__init__(1)
        self.order, self.after = order, after

    def run(self, units, fn, progress=None):
        units = list(units)
        out = [None] * len(units)
        for n, k in enumerate(self.order(len(units))):
            out[k] = fn(units[k])
            if progress is not None:
                progress(units[k].weight)
            if self.after is not None:
                self.after(n)
        return out


@pytest.mark.parametrize("order", ["forward", "backward", "shuffled"])
def test_parts_are_merged_in_unit_order_while_units_finish(tmp_path, tok, monkeypatch, order):
    """Issue 16: the merge runs while the job runs. A part is appended as soon as every unit
    before it has finished -- never earlier, whatever order units finish in -- and the
    dataset is byte-identical to one process's."""
    import pythia_data.tokenize.units as tu
    from pythia_data.jobs import PartMerger

    src = [str(_corpus(tmp_path / "a.jsonl", 300))]
    one = tokenize_files(src, tmp_path / "one", tok, append_eod=True)["output"]
    rng = np.random.default_rng(3)
    orders = {"forward": lambda n: list(range(n)), "backward": lambda n: list(range(n))[::-1],
              "shuffled": lambda n: [int(i) for i in rng.permutation(n)]}
    seen = []

    class Spy(PartMerger):
        def advance(self):
            super().advance()
            self.wait()  # the merge thread has caught up with this unit
            done = sorted(u.id for u in self.store.units if self.store.record(u) is not None)
            prefix = 0
            while prefix < len(done) and done[prefix] == prefix:
                prefix += 1
            seen.append((len(self._merged), prefix))  # appended == finished prefix

    monkeypatch.setattr(tu, "PartMerger", Spy)
    out = str(tmp_path / "o")
    s = tokenize_units(src, out, tok, _OrderedExecutor(orders[order]), unit_bytes=2000,
                       append_eod=True)
    assert s["units"] > 3
    assert len(seen) == s["units"]
    assert all(merged == prefix for merged, prefix in seen), seen
    if order == "forward":
        assert [m for m, _ in seen] == list(range(1, s["units"] + 1))
    assert _files(out) == _files(one)


def test_interrupt_after_some_parts_were_merged_leaves_no_output_and_resumes(tmp_path, tok):
    """A Ctrl-C while units still run, after parts were appended to the output's partial
    file: no dataset, no partial file; the job folder stays and the rerun only does the
    remaining units, with the same bytes."""
    src = [str(_corpus(tmp_path / "a.jsonl", 300))]
    one = tokenize_files(src, tmp_path / "one", tok)["output"]
    out = str(tmp_path / "o")

    def ctrl_c(n):
        if n == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_units(src, out, tok, _OrderedExecutor(lambda n: list(range(n)), ctrl_c),
                       unit_bytes=2000)
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "o.job", "one_text_document.bin",
                                            "one_text_document.idx"]
    s = tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=2000)
    assert s["units_run"] == s["units"] - 4
    assert _files(out) == _files(one)


def test_a_part_redone_with_other_bytes_after_it_was_merged_is_refused(tmp_path, tok,
                                                                      monkeypatch):
    """The final records must match the parts appended early; if a unit's part changed
    (its unit was redone and wrote other bytes), the merge refuses rather than keep a
    stale copy, and writes nothing."""
    import pythia_data.tokenize.units as tu
    from pythia_data.jobs import PartMerger

    class Redone(PartMerger):
        def finish(self, records):
            self.wait()
            assert len(self._merged) == len(records)  # all appended while running
            first = dict(records[0])
            first["outputs"] = {name: {**meta, "xxh3": "0" * 32}
                                for name, meta in first["outputs"].items()}
            super().finish([first, *records[1:]])

    monkeypatch.setattr(tu, "PartMerger", Redone)
    src = [str(_corpus(tmp_path / "a.jsonl", 120))]
    out = str(tmp_path / "o")
    with pytest.raises(OutputError, match="changed after it was merged"):
        tokenize_units(src, out, tok, LocalExecutor(1), unit_bytes=1000)
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "o.job"]


def test_each_command_gets_its_measured_local_mode():
    """threads for tokenize/retokenize, processes for detokenize (its JSON writing holds the
    GIL) and for --backend cuda; --local-mode overrides; it means nothing to Ray."""
    from pythia_data.cli.options import make_job_executor

    assert make_job_executor("local", 2, None).mode == "thread"
    assert make_job_executor("local", 2, None, default_mode="process").mode == "process"
    assert make_job_executor("local", 2, None, gpu=True).mode == "process"
    assert make_job_executor("local", 2, None, gpu=True, local_mode="thread").mode == "thread"
    assert make_job_executor("local", 2, None, local_mode="process").mode == "process"
    assert make_job_executor("local", None, None, gpu=True).workers == 1
    with pytest.raises(UsageError, match="--local-mode needs --executor local"):
        make_job_executor("ray", 2, None, local_mode="thread")
    with pytest.raises(UsageError, match="unknown local executor mode"):
        LocalExecutor(2, mode="fiber")


def test_collector_is_tuned_only_where_a_command_or_worker_runs():
    """tune() makes the cyclic GC collect rarely in this process; settle() freezes what is
    alive there, and only in a tuned process (a library user's process keeps Python's
    collector as it is)."""
    import gc

    from pythia_data.jobs import startup as collector

    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        if before != collector.THRESHOLDS:
            collector.settle()
            assert gc.get_freeze_count() == frozen  # untuned: nothing frozen
        collector.tune()
        assert gc.get_threshold() == collector.THRESHOLDS
        collector.settle()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_malloc_is_tuned_unless_the_user_set_glibc_malloc_variables():
    """tune() keeps freed batch buffers in the heap (mallopt); a process whose user set
    glibc's malloc variables is left as it is."""
    probe = "from pythia_data.jobs import startup; print(startup.tune_malloc())"
    env = {k: v for k, v in subprocess_env().items()
           if not (k.startswith("MALLOC_") and k.endswith("_")) and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
    for extra in ({"MALLOC_TRIM_THRESHOLD_": "131072"},
                  {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}):
        out = subprocess.run([sys.executable, "-c", probe], env={**env, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "False", (extra, out.stderr)
