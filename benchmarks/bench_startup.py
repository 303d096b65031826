"""Wall time of short CLI commands, start-up included (a script, not a test).

Each command runs ``--runs`` times (default 9) in a fresh interpreter, like a user typing
it; the median, min and max wall times are printed next to the target from issue 15
(``--help`` and ``catalog gpus`` well under 0.5 s, the README plan under 0.8 s). Before
the timed runs each command runs once untimed to warm the file cache. The median CPU
time (user + system) is printed too: on a busy machine it moves much less than wall time. With
``--importtime`` it also prints the ten slowest imports of ``guideopt.cli`` (cumulative,
from ``python -X importtime``).

It times the guideopt that the interpreter imports: set PYTHONPATH to a working tree to
time that tree (``PYTHONPATH=$PWD python benchmarks/bench_startup.py``).

Run: python benchmarks/bench_startup.py [--runs N] [--importtime]
Exit status 1 if a median is over its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_RUNS = 9
IMPORTTIME_TOP = 10
# (label, arguments after `guideopt`, target median wall seconds: issue 15 "Done means")
COMMANDS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("guideopt --help", ("--help",), 0.5),
    ("guideopt catalog gpus", ("catalog", "gpus"), 0.5),
    (
        "README plan (7B, $12/h)",
        ("plan", "--model", "meta-llama/Llama-2-7b-hf", "--budget", "12", "--input-len", "512", "--output-len", "256"),
        0.8,
    ),
)
# The console script is `guideopt = "guideopt.cli:main"`; running the module the same way
# keeps the measurement independent of where the venv put the script.
# `python -c` puts the working directory first on sys.path; a neutral one makes the runs
# import the guideopt that PYTHONPATH (or the installed package) names.
NEUTRAL_CWD = tempfile.gettempdir()
ENTRY = ("-c", "import sys; from guideopt.cli import main; sys.argv[0] = 'guideopt'; main()")


def wall_and_cpu_times(args: tuple[str, ...], runs: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system of the child) of each run."""
    cmd = [sys.executable, *ENTRY, *args]
    subprocess.run(cmd, capture_output=True, check=True, cwd=NEUTRAL_CWD)  # warm the file cache
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=NEUTRAL_CWD)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def slowest_imports(top: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest imports of ``guideopt.cli``."""
    cmd = [sys.executable, "-X", "importtime", "-c", "import guideopt.cli"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=NEUTRAL_CWD)
    rows = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per command (median reported)")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports of guideopt.cli")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {args.runs} runs per command")
    print(f"load average {os.getloadavg()[0]:.2f} (wall times grow with it; CPU time much less)")
    header = f"{'command':28s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'cpu s':>7s} {'target s':>9s}"
    print(header)
    print("-" * len(header))
    over = False
    for label, cmd_args, target_s in COMMANDS:
        times, cpus = wall_and_cpu_times(cmd_args, args.runs)
        median = statistics.median(times)
        over |= median > target_s
        flag = "" if median <= target_s else "  OVER"
        print(f"{label:28s} {median:9.3f} {min(times):7.3f} {max(times):7.3f} {statistics.median(cpus):7.3f} {target_s:9.2f}{flag}")
    if args.importtime:
        print("\nslowest imports of guideopt.cli (cumulative ms)")
        for us, name in slowest_imports(IMPORTTIME_TOP):
            print(f"{us / 1e3:9.1f}  {name}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
