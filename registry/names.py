"""Model names that read the same are the same name.

A name is kept in NFKC form (fullwidth `ｇ` is `g`, a decomposed `é` the precomposed one), and two
names whose *skeletons* match are refused as look-alikes: `gpt‐4` with U+2010 hyphens, or with a
Cyrillic `е`, would otherwise be a second model a caller cannot tell from the first. The skeleton
maps the confusables that matter for model names (dash variants, Cyrillic and Greek letters drawn
like Latin ones) onto ASCII; it is a small subset of Unicode TR39's table, chosen so no two plain
ASCII names ever collide but for case (`l`/`1`/`I` and `rn`/`m` stay distinct; `A`/`a` do not).
"""
from __future__ import annotations

import unicodedata

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u02d7\ufe58\ufe63\uff0d\u2796"
_LOOK_ALIKES = {
    **dict.fromkeys(_DASHES, "-"),
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "ρ": "p", "α": "a", "ι": "i", "κ": "k",
    "υ": "u",
    # Latin letters that pass for others
    "ı": "i", "ɡ": "g", "ɑ": "a",
}
_TABLE = str.maketrans(_LOOK_ALIKES)


def normal_name(name: str) -> str:
    """The form a name is kept and looked up in (NFKC)."""
    return unicodedata.normalize("NFKC", name)


def skeleton(name: str) -> str:
    """What the name reads as: equal skeletons are names a reader cannot tell apart, case ignored
    (`acme-7b` and `acme-7B` would be two models that one lookup typed either way cannot tell)."""
    return normal_name(name).translate(_TABLE).casefold()
