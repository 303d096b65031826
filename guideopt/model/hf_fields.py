"""Reading sizes out of a Hugging Face ``config.json``: one-line errors that name the key as
the file writes it."""

from __future__ import annotations

import json
import math
from typing import Any

from guideopt.model.limits import MAX_CONFIG_INT, MAX_LAYERS

REQUIRED = object()


class BadField(ValueError):
    """A config.json field that is missing or not what a size must be (named as written)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config.json lacks {key!r} {problem}" if problem.startswith("(") else f"config.json {key!r}: {problem}")


def layer_count(cfg: dict[str, Any], key: str = "num_hidden_layers", default: Any = REQUIRED) -> int:
    """A layer count, at most MAX_LAYERS (one entry per layer is built from it)."""
    n = whole(cfg, key, default)
    if n > MAX_LAYERS:
        raise BadField(key, f"must be between 1 and {MAX_LAYERS:,}, got {n:,}")
    return n


def whole(cfg: dict[str, Any], key: str, default: Any = REQUIRED, minimum: int = 1) -> int:
    """A size field: a whole number in [minimum, MAX_CONFIG_INT]; null or absent takes ``default``."""
    value = cfg.get(key)
    if value is None:
        if default is REQUIRED:
            raise BadField(key, "(needed to size the model; copy it from the model's config.json)")
        return int(default)
    ok_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, int) or ok_float):
        shown = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else json.dumps(value)[:40]
        raise BadField(key, f"expected a whole number, got {shown} (write it as in the model's config.json, e.g. 4096)")
    number = int(value)
    if not minimum <= number <= MAX_CONFIG_INT:
        raise BadField(key, f"must be between {minimum} and {MAX_CONFIG_INT:,}, got {number:,}")
    return number


def first_key(cfg: dict[str, Any], *keys: str) -> str:
    """The first of ``keys`` the config sets (not null); the last one when none is set."""
    return next((k for k in keys if cfg.get(k) is not None), keys[-1])


def flag(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadField(key, f"expected true or false, got {json.dumps(value)[:40]}")
    return value


def text(cfg: dict[str, Any], key: str, default: str) -> str:
    value = cfg.get(key)
    return value.lower() if isinstance(value, str) else default


def string_list(cfg: dict[str, Any], key: str) -> list[str] | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadField(key, "expected a list of layer kinds, as in the model's config.json")
    return value


def heads(cfg: dict[str, Any], hidden: int, heads_key: str, head_dim_key: str = "head_dim") -> tuple[int, int]:
    """(num_heads, head_dim); a missing head_dim is hidden / heads, which must be whole."""
    n = whole(cfg, heads_key)
    if cfg.get(head_dim_key) is not None:
        return n, whole(cfg, head_dim_key)
    if n > hidden:
        raise BadField(heads_key, f"{n} heads exceed hidden_size {hidden} (head_dim would be 0; give head_dim)")
    return n, hidden // n


def one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(exc).splitlines()[0]
