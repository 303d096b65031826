#!/usr/bin/env python3
"""Error of the stream models (analytic and simulated) on the serving rows of e2e.csv.

    python scripts/serving_accuracy.py [--data ../shared/data/measured/e2e.csv] [--max-configs N]

The same as ``guideopt validate FILE --serving``; what is compared is described in
``guideopt/calibration/serving.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideopt.calibration.serving import serving_errors, serving_markdown  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "measured" / "e2e.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--max-configs", type=int, default=40, help="aiconfigurator configurations sampled evenly")
    args = parser.parse_args()
    print(serving_markdown(serving_errors(args.data, args.max_configs)))


if __name__ == "__main__":
    main()
