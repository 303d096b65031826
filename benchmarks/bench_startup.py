"""Wall time of short CLI commands, start-up included (a script, not a test).

Each command runs ``--runs`` times (default 9) in a fresh interpreter, like a user typing
it; the median, min and max wall times are printed next to the target from issue 15
(``--help`` and ``catalog gpus`` well under 0.5 s, the README plan under 0.8 s). Before
the timed runs each command runs once untimed to warm the file cache. With
``--importtime`` it also prints the ten slowest imports of ``guideopt.cli`` (cumulative,
from ``python -X importtime``).

Run: python benchmarks/bench_startup.py [--runs N] [--importtime]
Exit status 1 if a median is over its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
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
ENTRY = ("-c", "import sys; from guideopt.cli import main; sys.argv[0] = 'guideopt'; main()")


def wall_times(args: tuple[str, ...], runs: int) -> list[float]:
    cmd = [sys.executable, *ENTRY, *args]
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def slowest_imports(top: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest imports of ``guideopt.cli``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import guideopt.cli"], capture_output=True, text=True, check=True)
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
    header = f"{'command':28s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'target s':>9s}"
    print(header)
    print("-" * len(header))
    over = False
    for label, cmd_args, target_s in COMMANDS:
        times = wall_times(cmd_args, args.runs)
        median = statistics.median(times)
        over |= median > target_s
        flag = "" if median <= target_s else "  OVER"
        print(f"{label:28s} {median:9.3f} {min(times):7.3f} {max(times):7.3f} {target_s:9.2f}{flag}")
    if args.importtime:
        print("\nslowest imports of guideopt.cli (cumulative ms)")
        for us, name in slowest_imports(IMPORTTIME_TOP):
            print(f"{us / 1e3:9.1f}  {name}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
