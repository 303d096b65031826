"""Time ``guideopt sweep`` on the bundled example grid with 1, 2 (and more) local workers (a script, not a test).

``examples/sweeps/llama-small-gpus.yaml``: 48 offline scenarios. Prints scenarios per second
for each worker count, the speed-up over one worker (a ratio, so a busy machine still
compares) and whether every run wrote the same bytes.

Run: python benchmarks/bench_sweep.py [--grid FILE] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from guideopt.io.sweep_run import run_sweep
from guideopt.io.sweep_scenarios import load_scenarios

DEFAULT_REPEAT = 3
GRID = Path(__file__).resolve().parent.parent / "examples" / "sweeps" / "llama-small-gpus.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, default=GRID)
    ap.add_argument("--workers", default="1,2", help="comma list of local worker counts")
    ap.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="best of this many runs per count")
    args = ap.parse_args()
    scenarios = load_scenarios(str(args.grid))
    outputs, base = [], None
    with tempfile.TemporaryDirectory() as tmp:
        run_sweep(scenarios, Path(tmp) / "warm-up.csv", workers=1)  # imports and first-call costs, untimed
        for k, n in enumerate(int(w) for w in args.workers.split(",")):
            best = float("inf")
            for r in range(args.repeat):
                out = Path(tmp) / f"{k}-{r}.csv"  # a fresh file: a rerun on the same file plans nothing
                start = time.perf_counter()
                report = run_sweep(scenarios, out, workers=n)
                best = min(best, time.perf_counter() - start)
                outputs.append(out.read_bytes())
            base = base or best
            print(
                f"{n} worker(s): {report.planned} scenarios in {best:.2f} s = {report.planned / best:.1f}/s, {base / best:.2f}x the first"
            )
        print("same rows from every run:", all(o == outputs[0] for o in outputs))


if __name__ == "__main__":
    main()
