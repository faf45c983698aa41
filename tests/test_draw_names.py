"""The drawer's directory names: one folder per sequence, whatever its characters."""

from __future__ import annotations

import random

from rasp_hydra.draw import safe_name


def test_escapes_have_a_fixed_width_so_no_two_sequences_share_a_folder():
    # Once both "%u1F600": an emoji, and U+1F60 followed by the digit 0.
    assert safe_name("\U0001F600") == "%U0001F600"
    assert safe_name("\u1F60" + "0") == "%u1F600"
    assert safe_name("\u00e9") == "%E9" and safe_name("%") == "%25"


def test_names_are_one_to_one_on_random_sequences():
    rng = random.Random(0)
    alphabet = ["a", "0", "F", "x", "_", " ", "%", "u", "U", "~", "\u00e9", "\u1f60",
                "\U0001F600", "\U00010000"]
    seen: dict[str, str] = {}
    for _ in range(20000):
        seq = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        for spaced in (False, True):
            name = safe_name(seq, spaced=spaced)
            key = f"{spaced}:{name}"
            assert seen.setdefault(key, seq) == seq, (seq, seen[key], name)
