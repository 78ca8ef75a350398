"""The ``hf`` backend: Hugging Face ``tokenizers`` itself (the reference; optional extra
``pythia-data[hf]``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from pythia_data.errors import FormatError, UsageError
from pythia_data.tokenize.base import Tokenizer, _check_errors, as_id_list, clean_text
from pythia_data.tokenize.spec import EOD_CANDIDATES

__all__ = ["HFTokenizer", "hf_available"]


def hf_available() -> bool:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


def _eod(hf, config) -> int | None:
    """The end-of-document id as HF assigns it (special added tokens first)."""
    special = {}
    for tok in config.added_tokens:
        if isinstance(tok, dict) and tok.get("special") and isinstance(tok.get("content"), str):
            tid = hf.token_to_id(tok["content"])
            if tid is not None:
                special.setdefault(tok["content"], tid)
    for cand in EOD_CANDIDATES:
        if cand in special:
            return special[cand]
    for cand in EOD_CANDIDATES:
        tid = hf.token_to_id(cand)
        if tid is not None:
            return tid
    return None


def _json_text(config) -> str:
    """The tokenizer.json's text for ``tokenizers``: the file's own bytes as read (the
    config's analysis parsed those same bytes), else the parsed JSON re-serialized. Not
    re-serializing saves ~0.13 s of a 2 MB file's ~0.35 s load; both readers keep the last
    of duplicate keys, so both texts give the same tokenizer."""
    raw = config.raw  # parsed and checked first: a file that is not JSON gets that error
    data = getattr(config, "data", None)
    if data is not None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # parsing it has already said so; the fallback keeps that error
    return json.dumps(raw)


class HFTokenizer(Tokenizer):
    backend = "hf"

    def __init__(self, config, *, errors: str = "strict", **options):
        try:
            import tokenizers
        except ImportError:
            raise UsageError(
                "the hf backend needs the 'tokenizers' package (pip install 'pythia-data[hf]')"
            ) from None
        unknown = set(options) - {"workers"}
        if unknown:
            raise UsageError(f"hf backend: unknown option(s) {', '.join(sorted(unknown))}")
        self.errors = _check_errors(errors)
        config = getattr(config, "config", config)  # a compiled model: its config
        self.name = config.name
        self.config = config
        try:
            self.hf = tokenizers.Tokenizer.from_str(_json_text(config))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - plain Exception, or a Rust panic
            raise FormatError(f"{config.name}: tokenizers cannot load this file "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                              ) from None
        # writers never truncate or pad: a file's "truncation" / "padding" are switched off
        self.hf.no_truncation()
        self.hf.no_padding()
        vocab = self.hf.get_vocab(with_added_tokens=True)
        self.vocab_size = (max(vocab.values()) + 1) if vocab else 0
        self._eod_id = _eod(self.hf, config)
        self._fast = getattr(self.hf, "encode_batch_fast", None) or self.hf.encode_batch

    def _clean(self, texts: Sequence[str]) -> list[str]:
        out = list(texts)
        for i, text in enumerate(out):
            if not isinstance(text, str) or not text.isascii():
                out[i] = clean_text(text, i, self.errors)
        return out

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encs = self._fast(self._clean(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        arrays = self.encode_batch(texts)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        if arrays:
            np.cumsum([a.size for a in arrays], out=offsets[1:])
            ids = np.concatenate(arrays)
        else:
            ids = np.zeros(0, dtype=np.int32)
        return ids.astype(np.int32, copy=False), offsets

    def decode(self, ids) -> str:
        return self.hf.decode(as_id_list(ids).tolist(), skip_special_tokens=False)

    def decode_batch(self, batch) -> list[str]:
        return self.hf.decode_batch(
            [as_id_list(ids).tolist() for ids in batch], skip_special_tokens=False
        )
