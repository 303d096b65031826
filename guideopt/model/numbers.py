"""One rule for a whole number, wherever it is written (flags, files, traces, API bodies).

Files and API bodies are read by pydantic, whose integer fields take ``512``, ``512.0`` and
the text ``"512"`` or ``"512.0"``, and refuse ``"5e2"``, ``512.5`` and ``true`` (a strict
field). Flags and trace cells are text too, so they are read by the same validator: the same
value is accepted or refused the same way on every surface (issue 25, item 9).
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

_WHOLE = TypeAdapter(int)


def whole_number(value: object) -> int:
    """``value`` as an int under pydantic's rule; ``ValueError`` when it is not a whole number."""
    if isinstance(value, bool):  # true is not 1
        raise ValueError(f"{str(value).lower()} is not a whole number")
    try:
        return _WHOLE.validate_python(value.strip() if isinstance(value, str) else value)
    except ValidationError:
        raise ValueError(f"{value!r} is not a whole number") from None
