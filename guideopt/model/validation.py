"""Validate input into a pydantic model; a bad field becomes one line naming it (InvalidRequestError)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from guideopt.errors import InvalidRequestError


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad field and what it should be."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after"))
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "input"
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"{field}: {first['msg']}{shown}"


def validated(model: type[BaseModel], data: Mapping[str, Any] | BaseModel) -> Any:
    """Validate input into a request model; a bad field becomes an InvalidRequestError."""
    return _validate(model, data)


def _validate(model: type[BaseModel], data: Mapping[str, Any] | BaseModel) -> Any:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from None
