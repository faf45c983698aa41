"""Names of tokens and sequences: a token as figures and in_out.txt show it (whitespace
made visible), and the file-system-safe, injective directory name of a sequence. Its one
reason to change: how a sequence is named on screen or on disk.
"""

from __future__ import annotations

import hashlib

MAX_NAME = 100  # longest escaped sequence kept whole in a directory name
VISIBLE = {" ": "␣", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def token_label(tok: str) -> str:
    """A token as it is shown in figures and in_out.txt: whitespace made visible."""
    return VISIBLE.get(tok, tok)


def visible(sequence: str) -> str:
    return "".join(token_label(c) for c in sequence)


def safe_name(sequence: str, spaced: bool = False) -> str:
    """A file-system-safe, injective directory name for a sequence.

    ``[A-Za-z0-9_-]`` stay as they are; every other character becomes the escape of its
    code point at a fixed width, ``%XX`` below 256, ``%uXXXX`` below 65,536 and
    ``%UXXXXXXXX`` above, so that no escape is the start of another (a variable-width
    ``%u1F600`` would also be ``%u1F60`` followed by ``0``). A name with upper-case letters (which a
    case-insensitive file system would merge with its lower-case twin) or longer than
    MAX_NAME characters gets ``~`` and 8 hex digits of the sequence's SHA-1 appended
    (and is cut to MAX_NAME first). ``spaced``: the sequence is tokens separated by
    single spaces (a vocabulary of numbers or words), written joined by ``_`` ("10 2 33"
    -> ``10_2_33``), and a ``_`` inside a token is escaped.
    """
    if not sequence:
        raise ValueError("empty sequence")
    name, cut = "", False
    for c in sequence:
        keep = c in SAFE and not (spaced and c == "_")
        part = "_" if spaced and c == " " else c if keep else _escape(c)
        if len(name) + len(part) > MAX_NAME:  # cut between characters, never in an escape
            cut = True
            break
        name += part
    if cut or any(c.isupper() for c in sequence):
        name += "~" + hashlib.sha1(sequence.encode("utf-8")).hexdigest()[:8]
    return name


def _escape(c: str) -> str:
    code = ord(c)
    return f"%{code:02X}" if code < 0x100 else f"%u{code:04X}" if code < 0x10000 else \
        f"%U{code:08X}"
