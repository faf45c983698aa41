"""Where RASP program text comes from: the library file, the shipped programs' folder,
the rule that tells a file name from program text, and reading a file as UTF-8. Its one
reason to change is how programs are found and read; the language is ``interpret``'s.
Torch-free and lark-free, so that the task registry can use it at import.
"""

from __future__ import annotations

from pathlib import Path

from .lang import RASPError

LIBRARY_PATH = Path(__file__).with_name("rasplib.rasp")
PROGRAMS = Path(__file__).resolve().with_name("programs")  # the shipped programs


class RASPLoadError(RASPError):
    """A ``load`` whose file cannot be found or read, or that loads itself."""


def is_source(text: str) -> bool:
    """Whether a program given as a string is its source text rather than a file name
    (or a shipped program's name): source has a newline, a ';' after a statement or a
    '{' opening a block, and a file name none of them."""
    return "\n" in text or ";" in text or "{" in text


def read_source(path: Path) -> str:
    """A .rasp file's text, or a RASPLoadError naming the file when it is not UTF-8 text
    (a binary file, a Latin-1 one) or cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RASPLoadError(
            f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
            f"{err.start} is not UTF-8), so it cannot be a RASP program: a .rasp file is "
            "UTF-8 text. Give a RASP source file, or convert this one (e.g. `iconv -f "
            "latin1 -t utf-8`).") from None
    except OSError as err:
        raise RASPLoadError(f"Cannot read {path}: {err.strerror or err}.") from None
