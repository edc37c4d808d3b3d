"""Names as people wrote them wherever MLflow takes them, and one rule for where it does not.

Run names, tags, params and registered model versions take any text, so they carry a candidate's
own name (``ldam_drw+posthoc_adjust``, ``weighted_ce_a0.75``). Two places refuse characters, and
there only those characters are replaced, each by ``_``:

- a logged model's name refuses ``/ : . % " '`` (:func:`model_name`):
  ``weighted_ce_a0.75`` -> ``weighted_ce_a0_75``, ``ldam_drw+posthoc_adjust`` as it is. The
  model's ``candidate`` tag keeps the name as written;
- a metric key allows letters, digits, ``_ - . : /`` and the space, and no key that path
  normalisation would change (:func:`key_part`, for a class name inside a key such as
  ``recall/<class>``): ``high risk`` and ``n/a`` as they are, ``a+b`` -> ``a_b``, ``x/`` ->
  ``x_``, ``..`` -> ``__``.

Replacing is not reversible, so :func:`check_distinct` refuses names that would become one
(``a+b`` beside ``a_b``), in one line naming both.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable

from pipeline import PipelineError

MODEL_REFUSED = frozenset("/:.%\"'")  # what MLflow refuses in a logged model's name
_KEY_REFUSED = re.compile(r"[^\w\-. :/]")  # what MLflow refuses in a metric key


def model_name(name: str) -> str:
    """``name`` with each character MLflow refuses in a logged model's name written as ``_``."""
    return "".join("_" if c in MODEL_REFUSED else c for c in str(name))


def key_part(name: str) -> str:
    """``name`` as one part of a metric key (``recall/<part>``): each character MLflow refuses
    written as ``_``, and where path normalisation would change the key (``//``, a leading or
    trailing ``/``, a ``.`` or ``..`` segment) its ``/`` and ``.`` too."""
    part = _KEY_REFUSED.sub("_", str(name)) or "_"
    key = f"k/{part}"
    if posixpath.normpath(key) != key:
        part = part.replace("/", "_").replace(".", "_")
    return part


def check_distinct(names: Iterable[str], rule: Callable[[str], str], what: str) -> None:
    """A one-line :class:`~pipeline.PipelineError` when two of ``names`` become one under ``rule``."""
    seen: dict[str, str] = {}
    for name in names:
        written = rule(name)
        if seen.setdefault(written, name) != name:
            raise PipelineError(
                f"{what} {seen[written]!r} and {name!r} would both be written {written!r} in MLflow, "
                f"which refuses some characters; rename one of them"
            )
