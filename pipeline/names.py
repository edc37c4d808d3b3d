"""One reversible rule from any name (a class, a model) to a name every tool accepts.

MLflow allows only ``[\\w\\-. :/]`` in metric keys and refuses ``/ : . % " '`` in logged-model
names; DVC reads ``.`` in a metrics file's keys as nesting; class names come from users and can
hold anything. :func:`safe_name` keeps ``A-Z a-z 0-9 _`` and the space, and writes every other
character (``-`` included, the escape itself) as ``-XX`` per UTF-8 byte, XX in upper-case hex:

    n/a -> n-2Fa      a<b -> a-3Cb      e "f" -> e -22f-22      focal_g0.5 -> focal_g0-2E5

:func:`original_name` reverses it. Names that need no escape are left as they are, so the
digits' classes ``0`` … ``9`` and most model names read the same everywhere.
"""

from __future__ import annotations

import re

SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_ ")
ESCAPE = "-"
_ESCAPED = re.compile(r"(?:-[0-9A-F]{2})+")


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_ ]`` written as ``-XX`` per UTF-8 byte."""
    return "".join(c if c in SAFE else "".join(f"{ESCAPE}{b:02X}" for b in c.encode()) for c in str(name))


def original_name(safe: str) -> str:
    """The name :func:`safe_name` was given; ``ValueError`` if ``safe`` is not one of its results."""
    if any(c not in SAFE and c != ESCAPE for c in safe) or _ESCAPED.sub("", safe).count(ESCAPE):
        raise ValueError(f"{safe!r} is not a name written by safe_name")
    return _ESCAPED.sub(lambda m: bytes.fromhex(m.group().replace(ESCAPE, "")).decode(), safe)
