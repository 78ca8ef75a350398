"""Fuzz harness for hostile ``.idx`` files (issue 8, edge 13).

Mutates the index of a small valid dataset (header counts, dtype code, sizes, pointers,
doc_idx: extreme values, off-by-one values, random bytes) and drives every reading entry
point on each mutant: ``read_index_header``, ``expected_bin_bytes``, ``IndexedDataset``
(open, ``stats``, ``ds[i]``, ``ds[a:b]``, ``gather``, ``read_tokens``) and the
``sample_spans`` kernel with a hostile order over the mutant's arrays. Any exception other
than the project's errors (or ``IndexError`` from ``ds[i]``) is a failure, and so is a
signal: the mutants run in a child process, and the parent restarts the child after the
mutant that killed it, so every crash is counted.

    python tests/index_fuzz.py N [SEED]      # prints a JSON summary
"""

from __future__ import annotations

import faulthandler
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HEADER = 34
BIG = [2**63 - 1, 2**63 - 2, 2**62 - 1, 2**62, 2**32, 2**31, 2**31 - 1, -1, -2, -(2**63)]


def _base(tmp: str) -> tuple[str, bytes]:
    from pythia_data.dataset import write_dataset

    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 60000, size=n).astype(np.uint16) for n in (4, 9, 1, 0, 13, 6, 2, 8)]
    prefix = write_dataset(os.path.join(tmp, "base"), docs, dtype=np.uint16)
    with open(prefix + ".idx", "rb") as f:
        return prefix, f.read()


def mutate(raw: bytes, i: int, seed: int) -> bytes:
    """Mutant number ``i`` of the index bytes ``raw`` (deterministic)."""
    rng = np.random.default_rng([seed, i])
    buf = bytearray(raw)
    n = struct.unpack_from("<Q", raw, 18)[0]
    sizes_at, ptr_at = HEADER, HEADER + 4 * n
    doc_at = ptr_at + 8 * n
    d = (len(raw) - doc_at) // 8
    for _ in range(int(rng.integers(1, 3))):
        try:
            buf = _mutate_once(buf, rng, n, d, sizes_at, ptr_at, doc_at)
        except (struct.error, IndexError, ValueError):
            pass  # the field is past a truncated end: skip this mutation
    return bytes(buf)


def _mutate_once(buf, rng, n, d, sizes_at, ptr_at, doc_at):
    kind = int(rng.integers(0, 8))
    if kind == 0:  # a pointer: extreme, off by a little, or misaligned
        j = int(rng.integers(0, n))
        old = struct.unpack_from("<q", buf, ptr_at + 8 * j)[0]
        choice = [*BIG, old + 1, old - 1, old + 2, old - 2, old * 2, 0]
        v = int(choice[int(rng.integers(0, len(choice)))])
        struct.pack_into("<Q", buf, ptr_at + 8 * j, v % 2**64)
    elif kind == 1:  # a size
        j = int(rng.integers(0, n))
        v = int([2**31 - 1, -1, -(2**31), 0, 1, 1000, 2**30][int(rng.integers(0, 7))])
        struct.pack_into("<i", buf, sizes_at + 4 * j, v)
    elif kind == 2:  # a doc_idx entry
        j = int(rng.integers(0, d))
        v = int([*BIG, 0, n, n + 1, 3][int(rng.integers(0, len(BIG) + 4))])
        struct.pack_into("<Q", buf, doc_at + 8 * j, v % 2**64)
    elif kind == 3:  # header counts
        off = 18 if rng.integers(0, 2) else 26
        v = int([*BIG, 0, 1, n - 1, n + 1, d - 1, d + 1][int(rng.integers(0, len(BIG) + 6))])
        struct.pack_into("<Q", buf, off, v % 2**64)
    elif kind == 4:  # dtype code
        buf[17] = int(rng.integers(0, 10))
    elif kind == 5:  # random bytes anywhere
        for _ in range(int(rng.integers(1, 6))):
            buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
    elif kind == 6:  # truncate or extend
        cut = int(rng.integers(0, len(buf) + 16))
        buf = buf[:cut] if cut <= len(buf) else buf + bytes(cut - len(buf))
    else:  # shift every pointer (a non-canonical but maybe aligned layout)
        delta = int(rng.integers(-3, 4)) * int(rng.integers(1, 3))
        for j in range(n):
            old = struct.unpack_from("<q", buf, ptr_at + 8 * j)[0]
            struct.pack_into("<q", buf, ptr_at + 8 * j, old + delta)
    return buf


def _exercise(prefix: str, rng) -> None:
    from pythia_data.dataset import IndexedDataset
    from pythia_data.format.header import expected_bin_bytes, read_index_header
    from pythia_data.kernels.spans import sample_spans

    read_index_header(prefix + ".idx")
    expected_bin_bytes(prefix + ".idx")
    with IndexedDataset(prefix) as ds:
        ds.stats()
        for i in range(min(len(ds), 64)):
            ds[i]
        whole = ds[:]
        for i in range(min(len(ds), 64)):  # one consistent path: batches read what ds[i] is
            got = ds.gather([int(ds.token_starts[i])], [int(ds.sizes[i])])
            if not np.array_equal(got, ds[i]) or not np.array_equal(whole[i], ds[i]):
                raise AssertionError(f"sequence {i}: gather/slice disagree with ds[{i}]")
        n_tok = ds.num_tokens
        starts = [0, max(n_tok - 1, 0), 2**62 - 1, 2**63 - 1, -1]
        lengths = [min(n_tok, 3), 1, 1, 1, 1]
        for s, ln in zip(starts, lengths, strict=True):
            try:
                ds.gather([s], [ln])
            except Exception as exc:  # noqa: BLE001 - sorted below
                _allowed(exc)
        ds.read_tokens(0, n_tok)
        # a hostile order over the mutant's arrays
        D = len(ds.doc_idx) or 1
        doc_idx = rng.integers(-2, len(ds) + 2, size=D).astype(np.int64)
        m = 4
        p0 = rng.integers(-1, D + 1, size=m).astype(np.int64)
        p1 = p0 + rng.integers(-1, 3, size=m)
        o0 = rng.choice([0, 1, 5, -1, 2**62], size=m).astype(np.int64)
        o1 = rng.choice([0, 3, 12, -1, 2**63 - 1], size=m).astype(np.int64)
        try:
            s, ln = sample_spans(p0, o0, p1, o1, doc_idx, ds.token_starts,
                                 np.asarray(ds.sizes), 5)
            ds.gather(s, ln)
        except Exception as exc:  # noqa: BLE001
            _allowed(exc)


def _allowed(exc: BaseException) -> None:
    from pythia_data.errors import PythiaDataError

    if not isinstance(exc, (PythiaDataError, IndexError)):
        raise exc


def child(tmp: str, start: int, count: int, seed: int, progress: str) -> int:
    faulthandler.enable()
    _prefix, raw = _base(tmp)
    mutant = os.path.join(tmp, "m")
    with open(_prefix + ".bin", "rb") as f:
        data = f.read()
    with open(mutant + ".bin", "wb") as f:
        f.write(data)
    bad = 0
    for i in range(start, start + count):
        with open(progress, "w") as f:
            f.write(str(i))
        with open(mutant + ".idx", "wb") as f:
            f.write(mutate(raw, i, seed))
        try:
            _exercise(mutant, np.random.default_rng([seed, i, 1]))
        except Exception as exc:  # noqa: BLE001
            try:
                _allowed(exc)
            except BaseException:
                bad += 1
                print(f"EXCEPTION mutant {i}: {type(exc).__name__}: {exc}", flush=True)
    return bad


def run(count: int, seed: int = 0, env: dict | None = None) -> dict:
    """Run ``count`` mutants; -> {"mutants", "crashes", "exceptions", "crashed": [ids]}."""
    crashed, exceptions, lines = [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        progress = os.path.join(tmp, "progress")
        start = 0
        while start < count:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", tmp, str(start), str(count - start),
                 str(seed), progress],
                capture_output=True, text=True, env=env,
            )
            out = [x for x in proc.stdout.splitlines() if x.startswith("EXCEPTION")]
            exceptions += len(out)
            lines += out
            if proc.returncode == 0:
                break
            with open(progress) as f:
                at = int(f.read())
            if proc.returncode > 0 and proc.returncode != 3:
                lines.append(f"child exit {proc.returncode}: {proc.stderr[-2000:]}")
                break
            if proc.returncode < 0 or proc.returncode == 3:
                crashed.append(at)
            start = at + 1
    return {"mutants": count, "crashes": len(crashed), "exceptions": exceptions,
            "crashed": crashed[:20], "failures": lines[:20]}


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        tmp, start, count, seed, progress = sys.argv[2:7]
        child(tmp, int(start), int(count), int(seed), progress)
        sys.exit(0)
    total = int(sys.argv[1])
    print(json.dumps(run(total, int(sys.argv[2]) if len(sys.argv) > 2 else 0)))
