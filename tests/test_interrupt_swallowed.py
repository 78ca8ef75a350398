"""A Ctrl-C that lands inside a C-called callback (as when numba loads a cached kernel
through llvmlite) must still stop the command, quietly: found by the Ctrl-C campaign, where
such a run printed an "Exception ignored" traceback and then finished as if never
interrupted."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import ctypes, ctypes.util, sys, time
import click
from pythia_data.cli.app import PythiaGroup

@click.group(cls=PythiaGroup)
def cli():
    pass

@cli.command()
def work():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    calls = []

    def compare(a, b):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # what a SIGINT during the callback does
        return 0

    arr = (ctypes.c_int * 64)(*range(64))
    libc.qsort(arr, 64, ctypes.sizeof(ctypes.c_int), CMP(compare))
    # the interrupt was swallowed by ctypes; it must come back before this loop ends
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pass
    print("ran to the end")

cli.main(args=["work"], prog_name="pythia-data")
"""


def test_ctrl_c_inside_a_c_callback_still_interrupts_quietly():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert "ran to the end" not in proc.stdout
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "pythia-data: interrupted", proc.stderr


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    script = SCRIPT.replace("raise KeyboardInterrupt  # what a SIGINT during the callback does",
                            "raise ValueError('boom')").replace(
        "while time.monotonic() < deadline:\n        pass", "")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ran to the end" in proc.stdout
    assert "boom" in proc.stderr  # printed by Python's own hook, as before
