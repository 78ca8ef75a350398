"""``console_main`` (the console scripts' entry) leaves with ``os._exit`` after the command,
but only after what the interpreter's exit does for the outside world: non-daemon threads
finish, ``atexit`` callbacks run, stdout and stderr are flushed; exit codes are kept."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import subprocess_env

SCRIPT = r"""
import atexit, os, sys, threading, time
marks = sys.argv[1]
def late():
    time.sleep(0.3)
    with open(marks + ".thread", "w") as fh:
        fh.write("done")
threading.Thread(target=late).start()          # non-daemon: the exit waits for it
atexit.register(lambda: open(marks + ".atexit", "w").write("ran"))
real_exit = os._exit
def quick(code):  # console_main's way out, recorded
    with open(marks + ".quick", "w") as fh:
        fh.write(str(code))
    real_exit(code)
os._exit = quick
sys.stdout.write("x" * 200000)                 # buffered: flushed before os._exit
sys.argv = ["pythia-data", *sys.argv[2:]]
from pythia_data.cli import console_main
console_main()
"""


def _run(tmp_path, *args):
    marks = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(marks), *args],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    return proc, marks


def test_threads_atexit_and_output_survive_the_quick_exit(tmp_path):
    proc, marks = _run(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("x" * 200000) and "pythia-data, version" in proc.stdout
    assert (tmp_path / "m.thread").read_text() == "done"
    assert (tmp_path / "m.atexit").read_text() == "ran"
    assert (tmp_path / "m.quick").read_text() == "0"  # left through os._exit


def test_under_a_tracer_the_interpreter_exits(tmp_path):
    """A profiler or tracer reports after the program: then no os._exit."""
    script = SCRIPT.replace("console_main()", "sys.settrace(lambda *a: None); console_main()")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m"), "--version"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.atexit").read_text() == "ran"
    assert not (tmp_path / "m.quick").exists()


def test_error_exit_code_and_one_line_kept(tmp_path):
    proc, marks = _run(tmp_path, "tokenize", str(tmp_path / "missing.jsonl"), "-o",
                       str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"pythia-data: error: {tmp_path / 'missing.jsonl'}: no such file or folder"]
    assert (tmp_path / "m.atexit").read_text() == "ran"
    assert (tmp_path / "m.quick").read_text() == "2"


def test_python_m_runs_console_main(tmp_path):
    """``python -m pythia_data`` goes through console_main (whose exit skips the interpreter's
    module teardown): a command's output arrives whole through a pipe."""
    proc = subprocess.run([sys.executable, "-m", "pythia_data", "--version"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("pythia-data, version")


_BLAS_PROBE = """
import atexit, os, sys
def report():
    import numpy  # noqa: F401 - what a command imports (OpenBLAS starts its threads)
    tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    print(os.environ.get("OPENBLAS_NUM_THREADS"), tasks, flush=True)
atexit.register(report)
sys.argv = ["pythia-data", "--help"]
from pythia_data.cli import console_main
console_main()
"""


@pytest.mark.slow
def test_a_command_runs_openblas_with_one_thread_unless_the_user_set_it():
    """console_main sets OPENBLAS_NUM_THREADS=1 before numpy is imported (its threads spin
    at import, ~0.1 s of CPU a process): one thread in the process after numpy's import; a
    user's own setting is kept; a process that imported numpy first is left as it is."""
    from pythia_data.cli.app import one_blas_thread

    env = {k: v for k, v in subprocess_env().items() if k != "OPENBLAS_NUM_THREADS"}
    for extra, want in (({}, "1"), ({"OPENBLAS_NUM_THREADS": "3"}, "3")):
        proc = subprocess.run([sys.executable, "-c", _BLAS_PROBE], capture_output=True,
                              text=True, env={**env, **extra}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        value, tasks = proc.stdout.strip().splitlines()[-1].split()
        assert value == want
        if not extra:
            assert tasks == "1"  # no OpenBLAS thread besides the main one
    assert "numpy" in sys.modules and not one_blas_thread()  # too late here: no change
