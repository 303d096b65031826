"""Fast start (issue 15): the CLI imports only what a command needs, when it needs it.

Each check runs in a fresh interpreter (as a user's command does), so that modules other
tests have imported cannot hide a heavy import. Wall times are measured by
``benchmarks/bench_startup.py``; these tests pin the cause, which does not vary with load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Heavy packages and what pulls them in: OR-Tools (and pandas, which OR-Tools imports) for
# the solver, numpy for the cost model, scipy for kernel fits, matplotlib for plots,
# FastAPI/uvicorn for `serve`, numba (and its llvmlite) for the simulator's compiled loop.
HEAVY = ("ortools", "pandas", "numpy", "scipy", "matplotlib", "fastapi", "uvicorn", "starlette", "numba", "llvmlite")

# Runs `guideopt ARGS...` in-process (click's standalone mode off) and prints the
# top-level packages loaded afterwards, as JSON.
PROBE = """
import json, sys
from guideopt.cli import main
args = sys.argv[1:]
if args:
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_after(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_package():
    assert loaded_after() & set(HEAVY) == set()


@pytest.mark.parametrize("args", [("--help",), ("catalog", "gpus"), ("plan", "--help"), ("schema",)])
def test_light_commands_load_no_heavy_package(args):
    assert loaded_after(*args) & set(HEAVY) == set()


def test_predict_loads_the_cost_model_but_not_the_solver():
    args = ("predict", "--model", "meta-llama/Llama-2-7b-hf", "--gpu", "l4", "--input-len", "64", "--output-len", "8")
    assert loaded_after(*args) & set(HEAVY) == {"numpy"}


def test_a_single_type_plan_loads_numpy_only():
    """A single-type plan is a sort over the Pareto set: no CP-SAT, so no OR-Tools (nor the pandas it imports)."""
    args = ("plan", "--model", "meta-llama/Llama-2-7b-hf", "--budget", "12", "--input-len", "512", "--output-len", "256")
    assert loaded_after(*args) & set(HEAVY) == {"numpy"}


def test_a_mixed_type_plan_loads_the_cp_sat_solver_but_not_plots_fits_or_the_web_stack():
    args = (
        "plan",
        "--model",
        "meta-llama/Llama-2-7b-hf",
        "--budget",
        "12",
        "--input-len",
        "512",
        "--output-len",
        "256",
        "--heterogeneous",
        "--top",
        "1",
        "--gpu",
        "l4",
        "--gpu",
        "a10g",
    )
    loaded = loaded_after(*args)
    assert "ortools" in loaded
    assert loaded & {"scipy", "matplotlib", "fastapi", "uvicorn", "starlette"} == set()


def test_importing_guideopt_loads_no_heavy_package():
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys, guideopt; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(json.loads(out.stdout)) & set(HEAVY) == set()


def test_the_library_api_is_still_reachable_from_the_package():
    """``guideopt.plan`` and friends load on first use (PEP 562)."""
    import guideopt
    from guideopt import api

    assert guideopt.plan is api.plan and guideopt.predict is api.predict and guideopt.predict_rows is api.predict_rows
    with pytest.raises(AttributeError):
        _ = guideopt.no_such_name


def test_a_stream_plan_with_a_length_mix_does_not_import_scipy_stats():
    """Issue 24: a named length mix's quantiles come from scipy.special (``costs.lengths``);
    scipy.stats alone took ~1 s to import."""
    probe = PROBE.replace('{m.split(".")[0] for m in sys.modules}', "set(sys.modules)")
    args = ("plan", "--model", "meta-llama/Llama-3.1-8B", "--lengths", "sharegpt", "--rate", "2", "--budget", "5", "--gpu", "l4")
    out = subprocess.run([sys.executable, "-c", probe, *args, "--ttft-ms", "2000"], capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "guideopt.costs.lengths" in modules and "guideopt.simulator.kernel" in modules  # it did plan and simulate
    assert "scipy.stats" not in modules
