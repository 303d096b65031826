"""Parse length sweeps: ``512``, ``512,1024,2048``, ``128:8192:x2`` (geometric) or ``128:1024:128`` (arithmetic)."""

from __future__ import annotations

from guideopt.errors import InvalidRequestError

MAX_SWEEP_VALUES = 10_000


def parse_lengths(text: str, field: str) -> list[int]:
    values: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        values.extend(_range(part, field) if ":" in part else [_positive(part, field)])
    if not values:
        raise InvalidRequestError(f"{field}: give a length, a list (512,1024) or a range (128:8192:x2)")
    return sorted(set(values))


def _positive(text: str, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequestError(f"{field}: {text!r} is not a whole number of tokens") from None
    if value <= 0:
        raise InvalidRequestError(f"{field}: {value} must be > 0")
    return value


def _range(text: str, field: str) -> list[int]:
    pieces = text.split(":")
    if len(pieces) != 3:
        raise InvalidRequestError(f"{field}: range {text!r} must be START:STOP:STEP (STEP like 128 or x2)")
    start, stop = _positive(pieces[0], field), _positive(pieces[1], field)
    step = pieces[2].strip()
    if stop < start:
        raise InvalidRequestError(f"{field}: range {text!r} stops before it starts")
    out: list[int] = []
    if step.lower().startswith("x"):
        try:
            factor = float(step[1:])
        except ValueError:
            factor = 0.0
        if factor <= 1:
            raise InvalidRequestError(f"{field}: geometric step {step!r} must be x followed by a factor > 1")
        value = float(start)
        while value <= stop:
            out.append(int(round(value)))
            value *= factor
    else:
        inc = _positive(step, field)
        if (stop - start) // inc + 1 > MAX_SWEEP_VALUES:
            raise InvalidRequestError(f"{field}: range {text!r} has more than {MAX_SWEEP_VALUES} values (use a larger step)")
        out = list(range(start, stop + 1, inc))
    return out
