"""The analytic sustainable rate of each MLPerf Server configuration against the rate its
submitter sustained, with one engine term changed at a time (docs/serving-model.md, "Error
against measurements": which mechanism explains the gap).

Run: python scripts/mlperf_capacity.py [--running-cap N] [--token-budget N] [--no-chunking]
     [--compute-efficiency X]   (the data: ../shared/data/measured/e2e.csv)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from guideopt.calibration.serving import _config, _gpu, _model, mlperf_server
from guideopt.calibration.validate import framework_rule, load_measurements
from guideopt.catalog import load_catalog, load_length_mix
from guideopt.costs.lengths import mix_lengths
from guideopt.costs.stream import stream_metrics
from guideopt.costs.stream_search import sustainable_rate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured" / "e2e.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--running-cap", type=float, default=None)
    ap.add_argument("--token-budget", type=float, default=None)
    ap.add_argument("--no-chunking", action="store_true")
    ap.add_argument("--compute-efficiency", type=float, default=None, help="engine compute efficiency of vLLM on ROCm (fitted: 0.415)")
    args = ap.parse_args()
    cat = load_catalog()
    if args.compute_efficiency is not None:
        cat.calibration.frameworks["vllm@amd"] = cat.calibration.frameworks["vllm@amd"].model_copy(
            update={"compute_efficiency": args.compute_efficiency}
        )
    lengths = mix_lengths(load_length_mix("mlperf-openorca"))
    print("gpu      model            submitted req/s  predicted  ratio  TPOT ms measured / predicted")
    for _source, case, measured in mlperf_server(load_measurements(args.data)):
        gpu, mid, rule = _gpu(case["gpu"], cat), _model(case["model"], cat), framework_rule(case["framework"])
        if gpu is None or mid is None or rule is None:
            continue
        conf = _config(mid, gpu, case["tp"], rule.framework, case["dtype"], lengths, lengths.max_total)
        opts = conf.options
        change = {}
        if args.running_cap:
            change["running_cap"] = np.full_like(opts.running_cap, args.running_cap)
        if args.token_budget:
            change["token_budget"] = np.full_like(opts.token_budget, args.token_budget)
        if args.no_chunking:
            change["chunked"] = np.zeros_like(opts.chunked, dtype=bool)
        opts = dataclasses.replace(opts, **change)
        best = float(sustainable_rate(conf.arch, opts, lengths)[0])
        m = stream_metrics(conf.arch, opts, lengths, np.array([min(case["rate"], best * 0.999)]))
        tpot = measured.get(("tpot_ms", "mean"), (float("nan"), 0))[0]
        print(
            f"{gpu:8s} {mid.split('/')[1][:16]:16s} {case['rate']:15.2f}  {best:9.2f}  {best / case['rate']:5.2f}  "
            f"{tpot:.1f} / {float(m.tpot_ms.mean[0]):.1f}"
        )


if __name__ == "__main__":
    main()
