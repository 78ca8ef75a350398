"""The shipped code point tables behave exactly like HF ``tokenizers`` on every code point.

Probes are batched (one HF call per class / probe kind over all 1,112,064 scalar values),
so the full sweep takes a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="HF tokenizers is the reference")

from tokenizers import Regex, normalizers, pre_tokenizers  # noqa: E402

from pythia_data.tokenize.cpu import nfc_bytes, unicode_tables  # noqa: E402

N_CP = 0x110000
ALL = np.array([c for c in range(N_CP) if not 0xD800 <= c <= 0xDFFF], dtype=np.int64)


def hf_matches(pattern: str) -> np.ndarray:
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    hit = np.ones(ALL.size, dtype=bool)
    step = 1 << 17
    for lo in range(0, ALL.size, step):
        text = "".join(map(chr, ALL[lo : lo + step].tolist()))
        for _piece, (a, b) in split.pre_tokenize_str(text):
            hit[lo + a : lo + b] = False
    return hit


@pytest.mark.slow
@pytest.mark.parametrize("bit,pattern", [
    (1, r"\p{L}"), (2, r"\p{N}"), (4, r"\s"),
    # the Split-regex families' classes (pythia_data/kernels/pretokenize_split.py)
    (8, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"), (16, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"),
    (32, r"\p{M}"), (64, r"[\p{P}\p{S}]"),
])
def test_class_table_equals_oniguruma_for_every_code_point(bit, pattern):
    ours = (unicode_tables().cls[ALL] & bit) != 0
    theirs = hf_matches(pattern)
    bad = ALL[ours != theirs]
    assert bad.size == 0, [hex(c) for c in bad[:20]]


def test_class_table_known_differences_from_old_unicode():
    cls = unicode_tables().cls
    # \s is exactly White_Space: U+001C..U+001F are not (Python's str.isspace says yes)
    assert all(cls[c] & 4 == 0 for c in range(0x1C, 0x20))
    assert cls[0x3000] & 4 and cls[0xA0] & 4 and cls[0x85] & 4
    # letters and digits of Unicode 15/16 (Python 3.11's unicodedata is Unicode 14)
    assert cls[0x11F04] & 1  # KAWI LETTER A (Unicode 15)
    assert cls[0x11F50] & 2  # KAWI DIGIT ZERO (Unicode 15)


def _compare_nfc(strings: list[str]):
    nfc = normalizers.NFC()
    joined = "\n".join(strings)
    theirs = nfc.normalize_str(joined)
    ours = nfc_bytes([joined])[0]
    if ours != theirs:  # find the first differing probe for the message
        for s in strings:
            a, b = nfc_bytes([s])[0], nfc.normalize_str(s)
            if a != b:
                pytest.fail(f"NFC differs on {[hex(ord(c)) for c in s]}: {a!r} vs {b!r}")
        pytest.fail("NFC differs on the joined probes")


def _chars():
    return [chr(c) for c in ALL.tolist() if c != 0x0A]


def test_nfc_of_every_code_point_alone():
    _compare_nfc(_chars())


@pytest.mark.slow  # four sweeps of every code point (each alone: the test above, by default)
def test_nfc_every_code_point_after_a_letter_and_before_marks():
    # composition with a preceding starter; reordering against classes 1, 230 and 240
    chars = _chars()
    _compare_nfc(["a" + c for c in chars])
    _compare_nfc([c + "\u0334" for c in chars])
    _compare_nfc(["a\u0345" + c for c in chars])
    _compare_nfc([c + "\u0301" for c in chars])


def test_nfc_every_mark_against_every_class():
    # every mark (class > 0 in HF's tables) against one mark of each class, both orders
    tables = unicode_tables()
    marks = np.flatnonzero(tables.ccc).tolist()
    refs = {}
    for m in marks:
        refs.setdefault(int(tables.ccc[m]), m)
    probes = [
        "a" + chr(m) + chr(r) for m in marks for r in refs.values()
    ] + ["a" + chr(r) + chr(m) for m in marks for r in refs.values()]
    _compare_nfc(probes)


def test_nfc_composition_pairs_and_hf_quirks():
    tables = unicode_tables()
    nfc = normalizers.NFC()
    # HF (older Unicode) does not compose U+11935 U+11930 (Unicode 13)
    assert nfc_bytes(["\U00011935\U00011930"])[0] == nfc.normalize_str("\U00011935\U00011930")
    assert nfc_bytes(["e\u0301"])[0] == "\u00e9"
    assert nfc_bytes(["\u0958"])[0] == "\u0915\u093c"  # composition exclusion
    assert nfc_bytes(["\u1100\u1161\u11a8"])[0] == "\uac01"  # Hangul L V T
    assert tables.comp_keys.size > 0

