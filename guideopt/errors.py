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
    """The request names a bad value; the message names the field and the fix."""


class NoFeasiblePlanError(GuideoptError):
    """The request is valid but no plan satisfies it."""

    exit_code = 3

    def __init__(self, message: str, conflicts: list[str] | None = None) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts or [])
