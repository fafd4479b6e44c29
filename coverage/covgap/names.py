"""Names turned into safe file names and identifiers: one home for every slug covgap makes.

Vietnamese names travel everywhere in covgap (communes, villages, operators); file
names and identifiers derived from them must be plain ASCII, never empty, and never a
path (``/``, ``..``). Both the HTML page names and the partner package names come from
:func:`slugify`, with their own allowed characters.
"""

from __future__ import annotations

import re
import unicodedata

#: File names Windows reserves whatever the extension.
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})


def ascii_fold(text: str) -> str:
    """Plain ASCII: Vietnamese đ/Đ become d/D, accents are dropped, other non-ASCII characters too.

    ``"Nghĩa Điền"`` → ``"Nghia Dien"``, ``"Đông Á"`` → ``"Dong A"``.
    """
    text = unicodedata.normalize("NFKD", str(text).replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).encode("ascii", "ignore").decode("ascii")


def slugify(text: str, *, keep: str = "A-Za-z0-9", sep: str = "-", lower: bool = False, max_len: int = 60,
            default: str = "x") -> str:
    """A safe name: :func:`ascii_fold`, then every run of characters outside ``keep`` becomes ``sep``.

    Parameters
    ----------
    keep
        The characters kept, as the inside of a regular-expression class (``"A-Za-z0-9_-"``).
    sep
        What replaces a run of other characters (``""`` drops them); stripped from both ends.
    lower
        Lower-case the result.
    max_len
        Longest result (cut, then stripped of ``sep`` again).
    default
        The result when nothing usable is left.

    Never empty, never contains a path separator, and ``..`` only if ``keep`` allows dots
    (no caller does).
    """
    folded = ascii_fold(text)
    if lower:
        folded = folded.lower()
    strip = sep + ("_-" if "_" in keep else "")
    out = re.sub(f"[^{keep}]+", sep, folded).strip(strip)[:max_len].strip(strip)
    return out or default
