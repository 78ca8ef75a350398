"""The ``cuda`` backend: the cpu engine's pipeline as numba.cuda kernels, ids identical by
construction (it reads the cpu engine's own tables).

Per batch of documents (concatenated UTF-8, up to ``batch_bytes``):

1. host: UTF-8 encode into a pinned buffer, asynchronous copy to the device;
2. device, one thread per byte: code point class, documents to route to the cpu
   (:mod:`pythia_data.kernels.cuda_pretokenize`); one thread per whitespace run: the added
   tokens made of spaces and the ``\\s+(?!\\S)`` rule; one thread per byte: the other
   pre-token boundaries;
3. device: prefix sums, distinct pre-tokens through a hash table, one thread per distinct
   pre-token BPE, ids scattered back in order (:mod:`pythia_data.kernels.cuda_bpe`);
4. host: copy back ids and document offsets; encode the routed documents with the cpu engine
   and splice them in.

Two workspaces (device buffers + pinned host buffers + a stream each) are allocated once per
tokenizer (grown only if a call needs more documents per batch) and alternate, so the host
encodes and unpacks one batch while the device works on the next.

Routed to the cpu engine, per document (same ids, just not on the device): documents with a
code point NFC could change (a combining mark, a composition's second character, a
decomposable character that does not map to itself, ...: see :func:`route_table`), with a
special added token (``<|endoftext|>`` inside the text), with a normalized added token that is
not a run of spaces, with a pre-token longer than ``long_piece`` bytes (default 256: BPE is
quadratic in a pre-token's length and runs on one GPU thread), or longer than ``batch_bytes``.

Without a GPU the constructor raises :class:`~pythia_data.errors.UsageError`, unless Numba's
CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1`` before numba is imported; for tests).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence

import numpy as np

from pythia_data.errors import InputError, UsageError
from pythia_data.tokenize.base import Tokenizer, _check_errors, clean_text, utf8_batch
from pythia_data.tokenize.cpu import CpuTokenizer
from pythia_data.tokenize.model import N_CP, TokenizerModel, as_model, build_trie, nfc_bytes
from pythia_data.tokenize.spec import TokenizerConfig

__all__ = ["CudaTokenizer", "cuda_status", "route_table"]

_NO_GPU = ("the cuda backend needs an NVIDIA GPU, its driver and numba-cuda "
           "(pip install 'pythia-data[cuda]')")


def cuda_status() -> tuple[bool, bool, str]:
    """(usable, simulator, reason if not usable)."""
    try:
        from numba import config, cuda
    except Exception as exc:  # noqa: BLE001 - any import failure means no cuda
        return False, False, f"numba.cuda cannot be imported ({exc})"
    if config.ENABLE_CUDASIM:
        return True, True, ""
    try:
        ok = bool(cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - driver errors are many classes
        return False, False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ok, False, "" if ok else "no usable CUDA device found"


def route_table(cpu: CpuTokenizer) -> np.ndarray:
    """uint8[0x110000]: 1 for code points whose documents go to the cpu engine because NFC
    may change text holding them; the rest are NFC-inert in any context.

    A code point NFC can act on (``nfc_flag``) is still safe when it has combining class 0,
    is not the second character of a composition, its decomposition does not start with such
    a second character, and NFC maps it alone to itself (then decomposing and recomposing a
    string of such characters gives it back)."""
    u = cpu.unicode_eff
    route = np.zeros(N_CP, dtype=np.uint8)
    if not u.nfc_flag.any():
        return route
    keys = u.comp_keys[u.comp_keys >= 0]
    second = np.zeros(N_CP, dtype=bool)
    second[keys & ((1 << 21) - 1)] = True
    route[second] = 1
    route[u.ccc > 0] = 1
    dec = np.nonzero(u.dec_index >= 0)[0]
    first = u.dec_data[u.dec_off[u.dec_index[dec]]]
    route[dec[second[first]]] = 1
    rest = [int(c) for c in dec if not route[c] and not 0xD800 <= c < 0xE000]
    normed = nfc_bytes([chr(c) for c in rest])
    for c, s in zip(rest, normed):
        if s != chr(c):
            route[c] = 1
    # anything else NFC might touch that the rules above did not clear
    return route


class _Launch:
    def __init__(self, simulator: bool):
        self.tpb = 4 if simulator else 256
        self.max_blocks = 2 if simulator else 1 << 16
        self.chunk = 4 if simulator else 128

    def __call__(self, m: int) -> int:
        return max(1, min(self.max_blocks, -(-m // self.tpb)))


class _Workspace:
    """Device + pinned host buffers for batches of up to ``cap`` bytes and ``docs`` docs."""

    def __init__(self, cuda, cap: int, docs: int, chunk: int):
        self.cap, self.docs = cap, docs
        dev = cuda.device_array
        self.stream = cuda.stream()
        self.data = dev(cap, np.uint8)
        self.offsets = dev(docs + 1, np.int64)
        self.kb = dev(cap, np.uint8)
        self.docstart = dev(cap, np.uint8)
        self.flag = dev(cap, np.uint8)
        self.kind = dev(cap, np.uint8)
        self.tokid = dev(cap, np.int32)
        self.pidx = dev(cap + 1, np.int64)
        self.pstart = dev(cap + 1, np.int64)
        self.rep = dev(cap, np.int32)
        self.nsym = dev(cap, np.int32)
        self.opos = dev(cap + 1, np.int64)
        self.ssym = dev(cap, np.int32)
        self.srank = dev(cap, np.int32)
        self.snew = dev(cap, np.int32)
        self.ids = dev(cap, np.int32)
        tsize = 1
        while tsize < 2 * cap:
            tsize <<= 1
        self.table = dev(tsize, np.int32)
        self.doc_route = dev(docs, np.uint8)
        self.doc_out = dev(docs + 1, np.int64)
        self.levels = []
        m = cap
        while m > chunk:
            m = -(-m // chunk)
            self.levels.append(dev(m + 1, np.int64))
        self.h_data = cuda.pinned_array(cap, np.uint8)
        self.h_offsets = cuda.pinned_array(docs + 1, np.int64)
        self.h_doc_out = cuda.pinned_array(docs + 1, np.int64)
        self.h_route = cuda.pinned_array(docs, np.uint8)
        self.h_ids = cuda.pinned_array(cap, np.int32)
        self.pending = None  # (d0, d1, n_bytes, n_docs, big) of the batch in flight


@contextlib.contextmanager
def _quiet_launches():
    """Numba's launch-time performance hints (small grids for the tiny serial kernels) are
    not for users of the tokenizer."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*Grid size .* under-utilization")
        warnings.filterwarnings("ignore", message=r"(?s).*Host array used in CUDA kernel")
        yield


def _filler(parts: list[bytes], big: list[int]):
    def fill(ws):
        n = sum(len(p) for p in parts)
        nd = len(parts)
        if n >= 512 * nd:  # long documents: one copy each straight into the pinned buffer
            view = memoryview(ws.h_data)
            pos = 0
            for part in parts:
                end = pos + len(part)
                view[pos:end] = part
                pos = end
        else:  # many short ones: fewer Python steps through one join
            ws.h_data[:n] = np.frombuffer(b"".join(parts), dtype=np.uint8)
        ws.h_offsets[0] = 0
        np.cumsum([len(p) for p in parts], out=ws.h_offsets[1:nd + 1])
        return n, nd, big

    return fill


def _slice_filler(buf: np.ndarray, offs: np.ndarray, d0: int, d1: int, cap: int):
    def fill(ws):
        local = offs[d0:d1 + 1] - offs[d0]
        lens = np.diff(local)
        too_big = lens > cap
        big = (np.nonzero(too_big)[0] + d0).tolist()
        if big:  # an empty document here, routed to the cpu
            lens = np.where(too_big, 0, lens)
            local = np.zeros_like(local)
            np.cumsum(lens, out=local[1:])
            parts = [buf[offs[d]:offs[d + 1]] for d in range(d0, d1) if not too_big[d - d0]]
            data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        else:
            data = buf[offs[d0]:offs[d1]]
        n = data.size
        ws.h_data[:n] = data
        ws.h_offsets[:d1 - d0 + 1] = local
        return n, d1 - d0, big

    return fill


def _check_utf8(buf: np.ndarray, offs: np.ndarray) -> None:
    """InputError unless every document is valid UTF-8 (pure ASCII is checked in one pass)."""
    if not buf.size or int(buf[offs[0]:offs[-1]].max(initial=0)) < 0x80:
        return
    idx = np.nonzero(np.diff(offs) > 0)[0]
    inside = (buf[offs[idx]] & 0xC0) == 0x80
    if inside.any():
        bad = int(idx[np.argmax(inside)])
        raise InputError(f"document {bad}: not valid UTF-8 (starts inside a character)")
    try:
        buf[offs[0]:offs[-1]].tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = int(np.searchsorted(offs, exc.start, side="right")) - 1
        raise InputError(f"document {bad}: not valid UTF-8 at byte "
                         f"{exc.start - int(offs[bad])}") from None


class CudaTokenizer(Tokenizer):
    backend = "cuda"
    families = CpuTokenizer.families

    @classmethod
    def unsupported_reason(cls, spec: TokenizerConfig | TokenizerModel) -> str | None:
        """Why the device kernels cannot run ``spec`` exactly, or None."""
        model = as_model(spec)
        reason = model.refusal(cls.families)
        if reason is None and model.whole_words and model.tables.whole_words:
            reason = (f"ignore_merges ({len(model.tables.whole_words)} vocabulary tokens "
                      "BPE would split; the device BPE has no pre-token cache)")
        return reason

    def __init__(self, spec: TokenizerConfig | TokenizerModel, *, errors: str = "strict",
                 workers: int | None = None, batch_bytes: int = 32 << 20,
                 batch_docs: int | None = None, long_piece: int = 256, **options):
        unknown = set(options) - {"cache_slots"}
        if unknown:
            raise UsageError(f"cuda backend: unknown option(s) {', '.join(sorted(unknown))}")
        usable, simulator, reason = cuda_status()
        if not usable:
            raise UsageError(f"{_NO_GPU}: {reason}")
        if not isinstance(batch_bytes, int) or batch_bytes < 16:
            raise UsageError(f"batch_bytes must be an integer >= 16, not {batch_bytes!r}")
        if not isinstance(long_piece, int) or long_piece < 2:
            raise UsageError(f"long_piece must be an integer >= 2, not {long_piece!r}")
        self.long_piece = long_piece
        if batch_docs is None:
            batch_docs = max(16, min(1 << 20, batch_bytes // 8))
        if not isinstance(batch_docs, int) or batch_docs < 1:
            raise UsageError(f"batch_docs must be a positive integer, not {batch_docs!r}")
        from numba import cuda

        from pythia_data.kernels import cuda_bpe, cuda_pretokenize, cuda_pretokenize_split

        self._cuda, self._kp, self._kbpe = cuda, cuda_pretokenize, cuda_bpe
        self.simulator = simulator
        self.errors = _check_errors(errors)
        model = as_model(spec)
        reason = self.unsupported_reason(model)
        if reason is not None:
            raise UsageError(f"{model.name}: the cuda backend does not support {reason}")
        self.cpu = CpuTokenizer(model, errors=errors, workers=workers, **options)
        self._ksplit = cuda_pretokenize_split
        self.family = self.cpu.family  # 0: GPT-2's regex kernels; else the sync-point kernel
        self.model = model
        self.name = model.name
        self.config = model.config
        self.vocab_size = self.cpu.vocab_size
        self._eod_id = model.eod_id
        self.batch_bytes = batch_bytes
        self.batch_docs = batch_docs
        self._launch = _Launch(simulator)
        self._lock = threading.Lock()
        self._ws: list[_Workspace] = []
        self.stats: dict = {}  # of the last call: docs, routed (to the cpu engine), batches
        t = self.cpu.tables
        # normalized added tokens: runs of spaces on the device, the others route documents
        space_tok = np.full(1, -1, dtype=np.int32)
        others = []
        for tok in model.added:  # HF's ids and matching order, normalized contents
            if not tok.normalized:
                continue
            if set(tok.match) == {0x20} and self.family == 0:
                if len(tok.match) >= space_tok.size:
                    space_tok = np.concatenate(
                        [space_tok, np.full(len(tok.match) + 1 - space_tok.size, -1, np.int32)])
                if space_tok[len(tok.match)] < 0:  # the first of duplicates wins (cpu trie)
                    space_tok[len(tok.match)] = tok.id
            else:
                others.append((tok.match, tok.id))
        self.max_space = int(space_tok.size - 1)
        otrie_next, otrie_tok = build_trie(others)
        size = 1
        while size < 2 * max(1, int((t.merge_keys != -1).sum())) + 1:
            size <<= 1
        pkeys, pranks, pnews = cuda_bpe.build_pair_table(t.merge_keys, t.merge_rank,
                                                         t.merge_new, size)
        self.route_cp = route_table(self.cpu)
        to = cuda.to_device
        self._d = {
            # GPT-2's boundary kernels compare class bytes: only its three class bits
            "cls": to(self.cpu.unicode.cls & 7 if self.family == 0 else self.cpu.unicode.cls),
            "route_cp": to(self.route_cp),
            "strie_next": to(t.strie_next), "strie_tok": to(t.strie_tok),
            "otrie_next": to(otrie_next), "otrie_tok": to(otrie_tok),
            "space_tok": to(space_tok), "byte_id": to(t.byte_id),
            "pkeys": to(pkeys), "pranks": to(pranks), "pnews": to(pnews),
        }

    # ------------------------------------------------------------------ device

    def _workspaces(self) -> list[_Workspace]:
        if not self._ws:
            self._ws = [_Workspace(self._cuda, self.batch_bytes, self.batch_docs,
                                   self._launch.chunk) for _ in range(2)]
        return self._ws

    def _scan(self, ws, src, dst, m, level=0):
        L, s, kb = self._launch, ws.stream, self._kbpe
        if m <= L.chunk:
            kb.serial_scan_kernel[1, 1, s](src, dst, m)
            return
        n_chunks = -(-m // L.chunk)
        sums = ws.levels[level]
        kb.chunk_sum_kernel[L(n_chunks), L.tpb, s](src, m, L.chunk, sums)
        self._scan(ws, sums, sums, n_chunks, level + 1)
        kb.chunk_scan_kernel[L(n_chunks), L.tpb, s](src, dst, m, L.chunk, sums)

    def _submit(self, ws: _Workspace, n: int, n_docs: int):
        """Queue one batch (``ws.h_data[:n]``, ``ws.h_offsets[:n_docs + 1]``) on its stream."""
        L, s, kp, kb, d = self._launch, ws.stream, self._kp, self._kbpe, self._d
        tpb = L.tpb
        if n:
            ws.data[:n].copy_to_device(ws.h_data[:n], stream=s)
        ws.offsets[:n_docs + 1].copy_to_device(ws.h_offsets[:n_docs + 1], stream=s)
        for arr in (ws.docstart, ws.flag, ws.kind):
            kp.fill_kernel[L(n), tpb, s](arr, n, np.uint8(0))
        kp.fill_kernel[L(n_docs), tpb, s](ws.doc_route, n_docs, np.uint8(0))
        tsize = 1
        while tsize < 2 * n:
            tsize <<= 1
        table = ws.table[:tsize]
        kp.fill_kernel[L(tsize), tpb, s](table, tsize, np.int32(-1))
        kp.doc_start_kernel[L(n_docs), tpb, s](ws.offsets, n_docs, ws.docstart)
        kp.classify_kernel[L(n), tpb, s](
            ws.data, n, ws.offsets, n_docs, d["cls"], d["route_cp"], d["strie_next"],
            d["strie_tok"], d["otrie_next"], d["otrie_tok"], ws.kb, ws.doc_route)
        if self.family == 0:  # GPT-2's regex
            kp.wsrun_kernel[L(n), tpb, s](ws.data, n, ws.kb, ws.docstart, d["space_tok"],
                                          self.max_space, ws.flag, ws.kind, ws.tokid)
            kp.boundary_kernel[L(n), tpb, s](ws.data, n, ws.kb, ws.docstart, ws.kind,
                                             ws.flag)
        else:  # a Split family: one thread per sync point
            self._ksplit.split_boundary_kernel[L(n), tpb, s](
                ws.data, n, ws.offsets, n_docs, ws.kb, ws.docstart, d["cls"], self.family,
                ws.flag)
        self._scan(ws, ws.flag, ws.pidx, n)
        kb.compact_kernel[L(n), tpb, s](ws.flag, ws.pidx, n, ws.pstart)
        kb.dedupe_kernel[L(n), tpb, s](ws.data, n, ws.kind, ws.pidx, ws.pstart, table, ws.rep)
        kb.bpe_kernel[L(n), tpb, s](ws.data, n, ws.kind, ws.pidx, ws.pstart, ws.rep,
                                    d["byte_id"], d["pkeys"], d["pranks"], d["pnews"],
                                    ws.ssym, ws.srank, ws.snew, ws.nsym, self.long_piece)
        kb.count_kernel[L(n), tpb, s](n, ws.offsets, n_docs, ws.kind, ws.pidx, ws.pstart,
                                      ws.rep, ws.nsym, self.long_piece, ws.doc_route, ws.opos)
        self._scan(ws, ws.opos, ws.opos, n)
        kb.scatter_kernel[L(n), tpb, s](ws.data, n, ws.kind, ws.tokid, ws.pidx, ws.pstart,
                                        ws.rep, ws.nsym, ws.ssym, d["byte_id"], ws.opos,
                                        ws.ids)
        kb.doc_offsets_kernel[L(n_docs + 1), tpb, s](ws.offsets, n_docs, ws.pidx, ws.opos,
                                                     ws.doc_out)
        ws.doc_out[:n_docs + 1].copy_to_host(ws.h_doc_out[:n_docs + 1], stream=s)
        if n_docs:
            ws.doc_route[:n_docs].copy_to_host(ws.h_route[:n_docs], stream=s)

    def _finish(self, ws: _Workspace):
        """Wait for the batch in flight on ``ws``: (d0, d1, ids, doc offsets, routed mask)."""
        d0, d1, n, n_docs, big = ws.pending
        ws.pending = None
        ws.stream.synchronize()
        doc_out = np.array(ws.h_doc_out[:n_docs + 1])
        routed = np.array(ws.h_route[:n_docs], dtype=bool)
        total = int(doc_out[-1])
        if total:
            ws.ids[:total].copy_to_host(ws.h_ids[:total], stream=ws.stream)
            ws.stream.synchronize()
        ids = np.array(ws.h_ids[:total], dtype=np.int32)
        for i in big:
            routed[i - d0] = True
        return d0, d1, ids, doc_out, routed

    # ------------------------------------------------------------------ encode

    def _batches(self, texts: Sequence[str]):
        """Yield (d0, d1, list of UTF-8 bytes, docs too big for a batch)."""
        cap, cap_docs = self.batch_bytes, self.batch_docs
        parts: list[bytes] = []
        big: list[int] = []
        size = 0
        d0 = 0
        for i, text in enumerate(texts):
            try:
                raw = text if isinstance(text, bytearray) else text.encode("utf-8")
            except UnicodeEncodeError:
                raw = clean_text(text, i, self.errors).encode("utf-8")
            except AttributeError:
                raise UsageError(
                    f"document {i} is a {type(text).__name__}, not a str") from None
            too_big = len(raw) > cap
            if too_big:
                raw = b""
            if parts and (size + len(raw) > cap or len(parts) >= cap_docs):
                yield d0, i, parts, big
                parts, big, size, d0 = [], [], 0, i
            if too_big:
                big.append(i)
            parts.append(raw)
            size += len(raw)
        if parts:
            yield d0, len(texts), parts, big

    def _pipeline(self, batches, texts) -> list:
        """Run batches ``(d0, d1, fill)`` (``fill(ws)`` writes the batch into the pinned
        buffers and returns (n bytes, n docs, docs too big)) two at a time. A finished
        batch's routed documents go through the cpu engine while the device runs the next.
        Returns per batch (d0, d1, ids, doc offsets, routed mask, cpu ids, cpu offsets)."""
        results = []
        wss = self._workspaces()

        def finish(ws):
            d0, d1, ids, doc_out, routed = self._finish(ws)
            cpu = (None, None)
            if routed.any():
                cpu = self.cpu.encode_flat([texts[int(i)] for i in np.nonzero(routed)[0] + d0])
            results.append((d0, d1, ids, doc_out, routed, *cpu))

        k = 0
        for d0, d1, fill in batches:
            ws = wss[k % 2]
            if ws.pending is not None:
                finish(ws)
            n, nd, big = fill(ws)
            self._submit(ws, n, nd)
            ws.pending = (d0, d1, n, nd, big)
            k += 1
        for j in range(k, k + 2):
            ws = wss[j % 2]
            if ws.pending is not None:
                finish(ws)
        return results

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(texts, Sequence):
            texts = list(texts)

        def batches():
            for d0, d1, parts, big in self._batches(texts):
                yield d0, d1, _filler(parts, big)

        with self._lock, _quiet_launches():
            results = self._pipeline(batches(), texts)
            return self._assemble(len(texts), results)

    def encode_utf8_flat(self, data, offsets) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`encode_flat` for documents already in UTF-8: ``data`` (bytes or uint8
        array) and int64 ``offsets`` (document i is ``data[offsets[i]:offsets[i + 1]]``).
        Invalid UTF-8 raises :class:`~pythia_data.errors.InputError` naming the document."""
        buf, offs = utf8_batch(data, offsets)
        _check_utf8(buf, offs)
        n = offs.size - 1
        cap, cap_docs = self.batch_bytes, self.batch_docs

        def batches():
            d0 = 0
            while d0 < n:
                # as many documents as fit (at least one; a too-big one is routed)
                d1 = int(np.searchsorted(offs, offs[d0] + cap, side="right")) - 1
                d1 = max(d0 + 1, min(d1, d0 + cap_docs, n))
                yield d0, d1, _slice_filler(buf, offs, d0, d1, cap)
                d0 = d1

        class _Texts:
            def __getitem__(self, i):
                return buf[offs[i]:offs[i + 1]].tobytes().decode("utf-8")

        with self._lock, _quiet_launches():
            results = self._pipeline(batches(), _Texts())
            return self._assemble(n, results)

    def _assemble(self, n, results):
        counts = np.zeros(n, dtype=np.int64)
        n_routed = 0
        for d0, d1, _ids, doc_out, routed, _cids, cpu_off in results:
            counts[d0:d1] = np.diff(doc_out)
            if cpu_off is not None:
                counts[np.nonzero(routed)[0] + d0] = np.diff(cpu_off)
                n_routed += cpu_off.size - 1
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        self.stats = {"docs": n, "routed": n_routed, "batches": len(results)}
        if not n_routed and len(results) == 1:
            return results[0][2], offsets
        out = np.empty(int(offsets[-1]), dtype=np.int32)
        for d0, d1, ids, doc_out, routed, cpu_ids, cpu_off in results:
            if cpu_off is None:
                out[offsets[d0]:offsets[d1]] = ids
                continue
            lens = np.diff(doc_out)
            keep = np.repeat(~routed, lens)
            shift = np.repeat(offsets[d0:d1] - doc_out[:-1], lens)
            pos = np.arange(ids.size, dtype=np.int64) + shift
            out[pos[keep]] = ids[keep]
            lens = np.diff(cpu_off)
            shift = np.repeat(offsets[np.nonzero(routed)[0] + d0] - cpu_off[:-1], lens)
            out[np.arange(cpu_ids.size, dtype=np.int64) + shift] = cpu_ids
        return out, offsets

    # ------------------------------------------------------------------ decode

    def decode(self, ids) -> str:
        return self.cpu.decode(ids)

    def decode_utf8_flat(self, ids, offsets):
        return self.cpu.decode_utf8_flat(ids, offsets)
