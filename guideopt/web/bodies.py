"""Request bodies of the web API: validated as a constraints file is, plus what only a
server must refuse (local model paths, trace files), each problem a :class:`FieldError`
(422 with the key path of the field). The body as sent is also checked for a key
written twice, which the JSON parser would otherwise keep silently (the one duplicate-key
rule of ``guideopt.model.unique_keys``)."""

from __future__ import annotations

import json
from typing import Any

from guideopt.catalog import Catalog, length_mix_ids, load_catalog
from guideopt.errors import CatalogError
from guideopt.io.constraints_file import ConstraintsFileError, loads
from guideopt.model.keypath import render_path
from guideopt.model.request import TRACE_SUFFIXES, PlanRequest
from guideopt.model.unique_keys import DUPLICATE_KEY, DuplicateKeyError, loads_json
from guideopt.model.validation import close_match

INLINE_BUCKETS = "{buckets: [{input_len, output_len, weight}]}"


class FieldError(Exception):
    """A bad request: 422 with the key path of the field and what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _check_model(payload: dict[str, Any], cat: Catalog) -> None:
    """The catalog's one model resolver, as on the command line, but no local paths here."""
    model = payload.get("model")
    if isinstance(model, str) and model:
        try:
            cat.resolve_model(model, allow_paths=False)
        except CatalogError as exc:
            raise FieldError("model", str(exc).removeprefix("model: ")) from None


def _check_lengths(payload: dict[str, Any]) -> None:
    """A length mix by id or inline buckets only: the server opens no file a client names
    (a trace path would let a request probe or read the server's files)."""
    workload = payload.get("workload")
    lengths = workload.get("lengths") if isinstance(workload, dict) else None
    named_file = isinstance(lengths, dict) and "file" in lengths
    if (isinstance(lengths, str) and lengths.lower().endswith(TRACE_SUFFIXES)) or named_file:
        raise FieldError(
            "workload.lengths",
            "the web API reads no files on the server: give a mix id (catalog length mixes) or inline buckets "
            f"({INLINE_BUCKETS}); run `guideopt plan --lengths FILE` for a trace",
        )
    mix = lengths.get("mix") if isinstance(lengths, dict) else lengths
    if isinstance(mix, str) and mix not in length_mix_ids():  # the catalog's words would offer a CSV/JSONL file
        guess = close_match(mix, length_mix_ids())
        hint = f"did you mean {guess!r}? " if guess else ""
        raise FieldError(
            "workload.lengths",
            f"unknown length mix {mix!r} ({hint}mixes: {', '.join(length_mix_ids())}; or inline buckets {INLINE_BUCKETS})",
        )


def _check_unique_keys(raw: bytes) -> None:
    """A key written twice is refused, as in a constraints file (JSON parsers keep the last)."""
    try:
        loads_json(raw)
    except DuplicateKeyError as exc:
        raise FieldError(render_path(exc.path) or "request", DUPLICATE_KEY) from None
    except (ValueError, RecursionError):  # not JSON: FastAPI has already said so
        pass


def parse_request(payload: Any, cat: Catalog | None = None, raw: bytes | None = None) -> PlanRequest:
    """Validate a request body as a constraints file would be; a problem is a FieldError.
    ``raw``: the body as sent, checked for a key written twice (lost once parsed into ``payload``)."""
    cat = cat or load_catalog()
    if raw:
        _check_unique_keys(raw)
    if not isinstance(payload, dict):
        raise FieldError(
            "request",
            "the body must be a JSON object with model, workload and budget (the structure of a constraints file: `guideopt schema`)",
        )
    _check_model(payload, cat)
    _check_lengths(payload)
    try:
        text = json.dumps(payload, allow_nan=True)
        return loads(text, "json", name="request", catalog=cat).request
    except ConstraintsFileError as exc:
        field = exc.key if exc.key and exc.key not in ("(top level)", "syntax error") else "request"
        raise FieldError(field, exc.problem) from None
