"""guideopt's command line: the ``guideopt`` entry point, a thin click layer over ``guideopt.api``.

Each command lives in its own module under ``guideopt.commands`` and is added here
explicitly; the options they share are in ``guideopt.commands.common``.
"""

from __future__ import annotations

import click

from guideopt.commands.calibrate import calibrate
from guideopt.commands.capacity import capacity
from guideopt.commands.catalog import catalog
from guideopt.commands.outputs import launch, pareto
from guideopt.commands.plan import plan
from guideopt.commands.predict import predict
from guideopt.commands.serve import serve
from guideopt.commands.simulate import simulate
from guideopt.commands.solve import schema, solve
from guideopt.commands.sweep import sweep
from guideopt.commands.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guideopt")
def main() -> None:
    """Plan LLM deployments: GPU type and count, DP/TP/PP, batch and split size under budget and SLOs."""


for _command in (plan, solve, schema, predict, capacity, pareto, launch, catalog, validate, calibrate, serve, simulate, sweep):
    main.add_command(_command)


if __name__ == "__main__":
    main()
