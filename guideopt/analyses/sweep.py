"""Parse length sweeps: ``512``, ``512,1024,2048``, ``128:8192:x2`` (geometric) or ``128:1024:128`` (arithmetic).

A sweep is capped at ``MAX_SWEEP_VALUES`` values per list and ``MAX_SWEEP_CASES`` cases in
all (``guideopt.model.limits``); the cap is checked before any value is made, so a
hostile range costs no time or memory.
"""

from __future__ import annotations

import math

from guideopt.errors import InvalidRequestError
from guideopt.model.limits import MAX_SEQUENCE_TOKENS, MAX_SWEEP_CASES, MAX_SWEEP_VALUES

__all__ = ["MAX_SWEEP_CASES", "MAX_SWEEP_VALUES", "check_cases", "parse_lengths"]


def parse_lengths(text: str, field: str) -> list[int]:
    values: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        values.update(_range(part, field) if ":" in part else [_positive(part, field)])
        if len(values) > MAX_SWEEP_VALUES:
            raise InvalidRequestError(f"more than {MAX_SWEEP_VALUES:,} lengths (sweep fewer values, or use a larger step)", field=field)
    if not values:
        raise InvalidRequestError("give a length, a list (512,1024) or a range (128:8192:x2)", field=field)
    return sorted(values)


def check_cases(*counts: int, field: str) -> None:
    """Refuse a sweep whose lists multiply to more than MAX_SWEEP_CASES cases."""
    total = math.prod(counts)
    if total > MAX_SWEEP_CASES:
        shown = " x ".join(f"{c:,}" for c in counts)
        raise InvalidRequestError(f"{shown} = {total:,} cases, more than {MAX_SWEEP_CASES:,} (sweep fewer lengths)", field=field)


def _positive(text: str, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequestError(f"{text!r} is not a whole number of tokens (write e.g. 512)", field=field) from None
    if value <= 0:
        raise InvalidRequestError(f"{value} must be > 0 (give a positive number of tokens)", field=field)
    if value > MAX_SEQUENCE_TOKENS:
        raise InvalidRequestError(f"{value:,} is more than {MAX_SEQUENCE_TOKENS:,} tokens (give a length a model can take)", field=field)
    return value


def _range(text: str, field: str) -> list[int]:
    pieces = text.split(":")
    if len(pieces) != 3:
        raise InvalidRequestError(f"range {text!r} must be START:STOP:STEP (STEP like 128 or x2)", field=field)
    start, stop = _positive(pieces[0], field), _positive(pieces[1], field)
    step = pieces[2].strip()
    if stop < start:
        raise InvalidRequestError(f"range {text!r} stops before it starts (write START:STOP:STEP with START <= STOP)", field=field)
    if step.lower().startswith("x"):
        return _geometric(text, start, stop, step, field)
    inc = _positive(step, field)
    if (stop - start) // inc + 1 > MAX_SWEEP_VALUES:
        raise InvalidRequestError(f"range {text!r} has more than {MAX_SWEEP_VALUES:,} values (use a larger step)", field=field)
    return list(range(start, stop + 1, inc))


def _geometric(text: str, start: int, stop: int, step: str, field: str) -> list[int]:
    try:
        factor = float(step[1:])
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 1):
        raise InvalidRequestError(f"geometric step {step!r} must be x followed by a finite factor > 1 (e.g. x2)", field=field)
    count = math.floor(math.log(stop / start) / math.log(factor)) + 1 if stop > start else 1
    if count > MAX_SWEEP_VALUES:
        raise InvalidRequestError(
            f"range {text!r} has about {count:,} values, more than {MAX_SWEEP_VALUES:,} (use a larger factor)", field=field
        )
    out: list[int] = []
    value = float(start)
    while value <= stop and len(out) <= MAX_SWEEP_VALUES:
        out.append(int(round(value)))
        value *= factor
    return sorted(set(out))
