"""Pre-tokenizer families the exact engine runs: recognised from ``tokenizer.json``.

:func:`recognise` is the one entry point (the tokenizer model and the backends call it)::

    recognise(pre_tokenizer_json) -> Family | str

It takes the ``"pre_tokenizer"`` value of a ``tokenizer.json`` (a dict, or ``None``) and
returns a :class:`Family` (an ``int``: the family id the kernels take) when the engine
reproduces that pre-tokenizer exactly, else a one-line reason (a ``str``) why not. Nothing
else is returned and nothing is raised, whatever the input.

A family is recognised by the *exact* pattern strings of its ``Split`` stages, each with
``behavior: "Isolated"`` and ``invert: false``, followed by ``ByteLevel`` with
``add_prefix_space: false`` and ``use_regex: false`` (``trim_offsets`` only changes offsets,
never ids). A pattern that means the same but is spelled differently is not recognised (the
caller falls back to HF ``tokenizers``): matching regex *meaning* is not attempted.

| family | who uses it | pre-tokenizer |
|---|---|---|
| ``GPT2`` | GPT-2, GPT-NeoX-20B, Pythia | ``ByteLevel(use_regex=true)`` |
| ``CL100K`` | GPT-4 (cl100k_base), Llama 3, OLMo 2 | Split(cl100k regex) + ByteLevel |
| ``O200K`` | GPT-4o / GPT-OSS (o200k_base) | Split(o200k regex) + ByteLevel |
| ``QWEN2`` | Qwen 2 / 2.5 / 3 | Split(cl100k regex with single ``\\p{N}``) + ByteLevel |
| ``DEEPSEEK_V3`` | DeepSeek V3 / R1 (and the V4 files seen) | Split(digits) + Split(kana/CJK) + Split(regex) + ByteLevel |
| ``QWEN3_5`` | Qwen 3.5 / 3.6 | Qwen 2's regex with marks in the letter runs (``[\\p{L}\\p{M}]+``) + ByteLevel |
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Family", "PATTERNS", "recognise", "kernel_family"]


class Family(IntEnum):
    """Family ids, as the kernels take them (stable: stored nowhere, but tests pin them)."""

    GPT2 = 0
    CL100K = 1
    O200K = 2
    QWEN2 = 3
    DEEPSEEK_V3 = 4
    QWEN3_5 = 5

    def __str__(self) -> str:
        return self.name.lower()


_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_CL100K = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN3_5 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
            r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_O200K = "|".join([
    r"[^\r\n\p{L}\p{N}]?" + _UPPER + "*" + _LOWER + "+" + _CONTRACTIONS + "?",
    r"[^\r\n\p{L}\p{N}]?" + _UPPER + "+" + _LOWER + "*" + _CONTRACTIONS + "?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])
_DEEPSEEK_PUNCT = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
# DeepSeek's third pattern holds literal CR and LF characters in its classes (as the JSON has)
_DEEPSEEK_V3 = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    _DEEPSEEK_PUNCT + "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*"
    + "|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
)

#: the exact Split pattern strings (in order) of each Split-based family
PATTERNS: dict[Family, tuple[str, ...]] = {
    Family.CL100K: (_CL100K,),
    Family.O200K: (_O200K,),
    Family.QWEN2: (_QWEN2,),
    Family.DEEPSEEK_V3: _DEEPSEEK_V3,
    Family.QWEN3_5: (_QWEN3_5,),
}
_BY_PATTERNS = {v: k for k, v in PATTERNS.items()}


def _split_pattern(stage: dict) -> str | None:
    """The regex of an ``Isolated``, non-inverted ``Split`` stage, else None."""
    if stage.get("type") != "Split" or stage.get("behavior") != "Isolated":
        return None
    if stage.get("invert") is not False:
        return None
    pattern = stage.get("pattern")
    if not isinstance(pattern, dict) or set(pattern) != {"Regex"}:
        return None
    regex = pattern["Regex"]
    return regex if isinstance(regex, str) else None


def _byte_level_reason(stage: dict, *, use_regex: bool) -> str | None:
    if stage.get("add_prefix_space"):
        return "ByteLevel pre-tokenizer with add_prefix_space"
    if bool(stage.get("use_regex", True)) != use_regex:
        return f"ByteLevel pre-tokenizer with use_regex={not use_regex}" + (
            " after a Split" if not use_regex else "")
    return None


def recognise(pre_tokenizer) -> Family | str:
    """The :class:`Family` the engine runs ``pre_tokenizer`` (a ``tokenizer.json``'s
    ``"pre_tokenizer"`` value) with, or a one-line reason why it cannot run it exactly."""
    if pre_tokenizer is None:
        return "no pre-tokenizer"
    if not isinstance(pre_tokenizer, dict):
        return f"pre-tokenizer is a {type(pre_tokenizer).__name__}, not an object"
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel":
        reason = _byte_level_reason(pre_tokenizer, use_regex=True)
        return reason if reason is not None else Family.GPT2
    if kind != "Sequence":
        return f"pre-tokenizer {kind!r}"
    stages = pre_tokenizer.get("pretokenizers")
    if not isinstance(stages, list) or not stages:
        return "empty pre-tokenizer Sequence"
    if not all(isinstance(s, dict) for s in stages):
        return "pre-tokenizer Sequence with a non-object stage"
    *splits, last = stages
    if last.get("type") != "ByteLevel" or not splits:
        names = ", ".join(repr(s.get("type")) for s in stages)
        return f"pre-tokenizer Sequence [{names}]"
    reason = _byte_level_reason(last, use_regex=False)
    if reason is not None:
        return reason
    patterns = []
    for stage in splits:
        regex = _split_pattern(stage)
        if regex is None:
            return (f"pre-tokenizer stage {stage.get('type')!r} (only Split with a Regex, "
                    "behavior Isolated, invert false)")
        patterns.append(regex)
    family = _BY_PATTERNS.get(tuple(patterns))
    if family is None:
        shown = " + ".join(repr(p if len(p) <= 60 else p[:57] + "...") for p in patterns)
        return f"Split pattern(s) of no known family: {shown}"
    return family


def kernel_family(family) -> int:
    """The id the kernels take for a pre-tokenizer family: a :class:`Family` is its own id;
    anything else (the tokenizer model's ``"gpt2"`` for GPT-2's ByteLevel) is GPT-2's, 0."""
    return int(family) if isinstance(family, Family) else int(Family.GPT2)
