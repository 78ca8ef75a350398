"""Exact GPT-NeoX-20B (and other byte-level BPE) tokenization.

    from pythia_data.tokenize import load_tokenizer
    tok = load_tokenizer()                  # bundled GPT-NeoX-20B, cpu backend
    ids, offsets = tok.encode_flat(texts)   # the fast path writers use
    text = tok.decode(ids[offsets[0]:offsets[1]])

Backends (``pythia_data.tokenize.registry.BACKENDS``): ``cpu`` (numba engine, exact),
``hf`` (Hugging Face ``tokenizers``, the reference), ``cuda`` (numba.cuda kernels,
exact; needs an NVIDIA GPU and ``pythia-data[cuda]``, see docs/gpu.md).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

from pythia_data.errors import UsageError
from pythia_data.tokenize.registry import BACKENDS
from pythia_data.tokenize.spec import TokenizerConfig, open_config, read_config

if TYPE_CHECKING:
    from pythia_data.tokenize.base import Tokenizer

__all__ = ["Tokenizer", "TokenizerConfig", "load_tokenizer", "BACKENDS", "backend_class"]


def __getattr__(name: str):
    # Tokenizer (numpy) on first use, so that importing pythia_data.tokenize.registry (the
    # CLI's choices) stays light: `checksum` must start without numpy or numba
    if name == "Tokenizer":
        from pythia_data.tokenize.base import Tokenizer

        return Tokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_class(name: str):
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UsageError(
            f"unknown tokenizer backend {name!r} (choose from {', '.join(BACKENDS)})"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_tokenizer(spec=None, backend: str = "cpu", **options) -> Tokenizer:
    """A tokenizer for ``spec`` (None = bundled GPT-NeoX-20B; a tokenizer.json path or its
    folder; a hub model id) on ``backend``.

    Options: ``errors`` ("strict" | "replace", see :mod:`pythia_data.tokenize.base`),
    ``workers`` (cpu backend: threads per call, default min(os.cpu_count(), 8)),
    ``batch_bytes`` / ``batch_docs`` (cuda backend: device batch size).
    The file is compiled once into its stages (:mod:`pythia_data.tokenize.model`; the
    compiled tables are kept on disk for the next run, see
    :mod:`pythia_data.tokenize.tables_cache`); one the
    engine does not run exactly (another normalizer, pre-tokenizer, model type or BPE option,
    see docs/tokenize.md) falls back to the ``hf`` backend with a warning.
    """
    cls = backend_class(backend)
    if cls.unsupported_reason is None:  # takes any tokenizer.json as it is (hf)
        return cls(read_config(spec), **options)
    from pythia_data.tokenize import tables_cache
    from pythia_data.tokenize.model import compile_model

    config = open_config(spec)
    model = tables_cache.load_model(config)
    cached = model is not None
    if not cached:
        model = compile_model(config)
    reason = cls.unsupported_reason(model)
    if reason is not None:
        from pythia_data.tokenize.hf import HFTokenizer, hf_available

        if not hf_available():
            raise UsageError(
                f"{config.name}: the {backend} backend does not support this tokenizer "
                f"({reason}) and the fallback needs 'tokenizers' (pip install 'pythia-data[hf]')"
            )
        warnings.warn(
            f"{config.name}: the {backend} backend does not support this tokenizer ({reason}); "
            "using the hf backend",
            stacklevel=2,
        )
        return HFTokenizer(config, **options)
    tok = cls(model, **options)
    if not cached:
        tables_cache.save_model(model)
    return tok
