"""The ``hf`` backend: Hugging Face ``tokenizers`` itself (the reference; optional extra
``pythia-data[hf]``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pythia_data.errors import UsageError
from pythia_data.tokenize.base import Tokenizer, _check_errors, as_id_list, clean_text
from pythia_data.tokenize.spec import TokenizerConfig

__all__ = ["HFTokenizer", "hf_available"]


def hf_available() -> bool:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


class HFTokenizer(Tokenizer):
    backend = "hf"

    def __init__(self, config: TokenizerConfig, *, errors: str = "strict", **options):
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
        self.name = config.name
        self.config = config
        self.vocab_size = config.vocab_size
        self._eod_id = config.eod_id
        self.hf = tokenizers.Tokenizer.from_str(__import__("json").dumps(config.raw))
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
