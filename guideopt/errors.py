"""Expected failures, kept apart from bugs.

The CLI turns every ``GuideoptError`` into a one-line message and an exit code; anything
else is a bug and is allowed to crash loudly.
"""

from __future__ import annotations


class GuideoptError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1


class CatalogError(GuideoptError):
    """A catalog entry (GPU, model, framework) is unknown or malformed."""


class InvalidRequestError(GuideoptError):
    """The request names a bad value; the message names the field and the fix.

    ``field`` is the key path of the bad value in the request (``workload.input_len``)
    when known, so that each entry point can name it as its user wrote it (a flag, a
    file key, a JSON field); ``problem`` is the message without the field.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.problem = message


class NoFeasiblePlanError(GuideoptError):
    """The request is valid but no plan satisfies it."""

    exit_code = 3

    def __init__(self, message: str, conflicts: list[str] | None = None) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts or [])


class GuideoptWarning(UserWarning):
    """A result is given, but with a caveat the user must see (one line on stderr; a
    ``warnings`` list in the web API's JSON)."""
