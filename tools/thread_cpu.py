#!/usr/bin/env python3
"""Per-thread CPU seconds of one tokenize run (issue 16 diagnosis, not a benchmark).

    python tools/thread_cpu.py one-process|local-1|local-2t SRC OUT [--unit-size 16M]

Runs the contender as ``bin/bench-scale --run`` does (same process settings), with every
thread's CPU time taken when it ends (``time.thread_time`` at the end of ``run``), and the
CPU and wall time of a few functions (inclusive, per thread name) wrapped. Prints JSON.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import resource
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CPU: dict = collections.defaultdict(float)  # thread kind -> CPU s
COUNT: dict = collections.Counter()
FN: dict = collections.defaultdict(lambda: [0.0, 0.0, 0])  # (kind, label) -> [cpu, wall, n]
GAPS: dict = collections.defaultdict(float)
_lock = threading.Lock()
_tls = threading.local()


def kind(name: str) -> str:
    return re.sub(r"[_-]?\d+$", "", re.sub(r" \(.*\)$", "", name))


_orig_run = threading.Thread.run


def _run(self):
    try:
        _orig_run(self)
    finally:
        t = time.thread_time()
        with _lock:
            CPU[kind(self.name)] += t
            COUNT[kind(self.name)] += 1


threading.Thread.run = _run


def wrap(owner, attr, label):
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def inner(*a, **k):
        c, w = time.thread_time(), time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            key = (kind(threading.current_thread().name), label)
            with _lock:
                e = FN[key]
                e[0] += time.thread_time() - c
                e[1] += time.perf_counter() - w
                e[2] += 1

    setattr(owner, attr, inner)


def main() -> None:
    name, src, out = sys.argv[1:4]
    unit_size = sys.argv[sys.argv.index("--unit-size") + 1] if "--unit-size" in sys.argv \
        else "16M"
    from pythia_data.jobs.startup import tune

    tune()
    import pythia_data.jobs.run as jrun
    import pythia_data.jobs.store as jstore
    import pythia_data.tokenize.pipeline as pl
    import pythia_data.tokenize.units as units
    from pythia_data.dataset import builder as dbuilder
    from pythia_data.jobs import LocalExecutor, parse_size
    from pythia_data.tokenize import load_tokenizer

    wrap(pl, "_encode_stored", "encode")
    wrap(pl, "_write_batch", "write batch")
    wrap(pl, "_block_batch", "jsonl block")
    wrap(pl, "_read_block", "read syscalls")
    wrap(units, "record_unit", "record (hash parts, json)")
    wrap(jstore, "hash_file", "xxh3 of a file")
    wrap(jrun.PartMerger, "advance", "merge advance (check+copy)")
    wrap(jrun.PartMerger, "finish", "merge finish + commit")
    wrap(dbuilder.DatasetBuilder, "finalize", "builder finalize")
    wrap(units, "_tokenize_unit", "unit (whole)")
    wrap(pl, "write_part", "write_part")
    wrap(jrun, "run_units", "run_units")
    t0 = time.perf_counter()
    c0 = time.thread_time()
    tok = load_tokenizer(None, workers=1)
    load = time.thread_time() - c0
    if name == "one-process":
        pl.tokenize_files([src], out, tok, append_eod=True)
    else:
        ex = LocalExecutor(1) if name == "local-1" else LocalExecutor(2, mode="thread")
        units.tokenize_units([src], out + "_text_document", tok, ex, append_eod=True,
                             unit_bytes=parse_size(unit_size), threads=1)
        ex.close()
    wall = time.perf_counter() - t0
    CPU["MainThread"] += time.thread_time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    live = {}
    for t in threading.enumerate():
        if t is not threading.main_thread():
            live[t.name] = "alive"
    print(json.dumps({
        "name": name, "wall": round(wall, 3), "process_cpu": round(ru.ru_utime + ru.ru_stime, 3),
        "user": round(ru.ru_utime, 3), "sys": round(ru.ru_stime, 3),
        "tokenizer_load_cpu": round(load, 3),
        "threads": {k: [round(v, 3), COUNT.get(k, 1)] for k, v in sorted(CPU.items())},
        "functions": {f"{k[0]}: {k[1]}": [round(v[0], 3), round(v[1], 3), v[2]]
                      for k, v in sorted(FN.items())},
        "alive_at_end": live,
    }, indent=1))


if __name__ == "__main__":
    main()
