"""Click parameter types and option groups shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from guideopt.model.numbers import whole_number


class LoadParam(click.ParamType):
    """A stream load: a positive number, or ``max`` (the most the budget serves within the SLOs)."""

    name = "NUMBER|max"

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().lower() == "max":
            return "max"
        try:
            return whole_number(value) if self.kind is int else self.kind(value)
        except (TypeError, ValueError):
            what = "a whole number" if self.kind is int else "a number"
            self.fail(f"{value!r} is not {what} or max", param, ctx)


class WholeParam(click.ParamType):
    """An integer flag read by the rule files and traces use (``model.numbers.whole_number``):
    ``512`` and ``512.0`` are 512; ``5e2``, ``512.5`` and ``true`` are refused."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return whole_number(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)


WHOLE = WholeParam()
LOAD = LoadParam(float)
LOAD_INT = LoadParam(int)


def layout_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The MoE layout flags of ``predict``, ``capacity`` and ``simulate`` (CONTRACT "Layouts")."""
    for option in reversed(
        (
            click.option(
                "--attention-dp",
                type=WHOLE,
                default=None,
                help="Attention data-parallel ranks per replica (MoE: DEP); GPUs per replica = tp x attention-dp x pp.",
            ),
            click.option(
                "--moe-tp", type=WHOLE, default=None, help="Tensor parallelism of each expert (default: tp x attention-dp / moe-ep)."
            ),
            click.option("--moe-ep", type=WHOLE, default=None, help="Expert-parallel ranks of the MoE layers (TEP: --tp 8 --moe-ep 8)."),
        )
    ):
        func = option(func)
    return func


def disagg_role_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The disaggregated deployment flags of ``simulate`` (``predict --csv``'s disaggregated columns)."""
    helps = {
        "workers": "workers (replicas) in the {role} pool",
        "tp": "TP of each {role} worker (default 1)",
        "attention-dp": "attention-DP ranks of each {role} worker (default 1)",
        "moe-ep": "expert-parallel ranks of each {role} worker (default 1)",
    }
    for role in ("decode", "prefill"):
        for name in reversed(helps):
            func = click.option(f"--{role}-{name}", type=WHOLE, default=None, help="Disaggregated: " + helps[name].format(role=role) + ".")(
                func
            )
    return func
