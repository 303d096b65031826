"""Limits on what one request may ask for, each with the reason for its value.

Every entry point (CLI flags, constraints files, ``predict --csv`` rows, the web API)
checks input against these same numbers through ``guideopt.model.validation``, so a value
gets one verdict everywhere. A limit exists to turn a typo or a hostile input into a
one-line error instead of hours of work, gigabytes of memory or a float overflow; each is
set far above any real deployment so that no genuine request meets it.
"""

from __future__ import annotations

# ---- sizes of one request

# Tokens in one prompt or one output. The longest context of any published model is
# 10M tokens (Llama 4 Scout); 10x that leaves room while keeping every product of
# tokens, layers and bytes far inside float64's exact range.
MAX_SEQUENCE_TOKENS = 100_000_000

# Requests in one batch (`--batch`, `workload.batch`). 10^9 is the size the issue's
# `capacity --batch` reproducer uses; anything above is a typo.
MAX_BATCH = 1_000_000_000

# GPUs in one deployment or of one type: the largest announced clusters hold ~10^5-10^6
# accelerators.
MAX_GPUS = 1_000_000

# One TP or PP size. No scale-up domain exceeds 576 GPUs (NVL576); 1024 is a round
# ceiling above it (the solver still drops sizes a GPU's node cannot hold).
MAX_PARALLEL_SIZE = 1024

# A budget above $10M/h (~3M H100-hours at list price every hour) is a typo, and an
# unbounded one lets the solver fill its whole search space ("--budget inf" planned
# 131,072 B200s).
MAX_BUDGET_USD_PER_HOUR = 10_000_000.0

# Requests/s for `capacity --rate`: a bound only against overflow ("--rate inf" crashed);
# a large real rate meets the replica cap of capacity sizing first, with its own message.
MAX_RATE_REQ_S = 1e12

# SLO bounds: against overflow only (the solver scales them to integers; "--min-throughput
# 1e300" crashed the mixed-type model). 10^12 output tokens/s is ~10^7 H100s; 10^12 ms of
# TTFT/TPOT is 30 years.
MAX_SLO_THROUGHPUT_TOK_S = 1e12
MAX_SLO_MS = 1e12

# ---- sweeps (`capacity --input-len 128:8192:x2`)

# Values in one length list or range: a geometric x1.000000001 step from 1 to 10^9 made
# 10^10 values (844 MB before it was stopped).
MAX_SWEEP_VALUES = 1_000
# Cases in one sweep (input lengths x output lengths): each case builds a cost table
# (~1.2 ms measured on a 7B model), so 5,000 cases stay within ~10 s.
MAX_SWEEP_CASES = 5_000

# A batch split into more sub-batches than this is summarised (count and sizes) instead
# of listed: `capacity --batch 1000000000` printed a 26.7 MB list.
MAX_LISTED_SUB_BATCHES = 32

# ---- constraints files

# Bytes in one constraints file. The largest example is ~1 KB; a file that lists every
# catalog GPU with a price override and every option is ~3 KB.
MAX_CONSTRAINTS_FILE_BYTES = 256 * 1024
# YAML nodes after aliases are expanded. A 10-line alias bomb expands to 10^9 nodes; a
# real file has well under 500.
MAX_YAML_NODES = 10_000
# Keys in one mapping or items in one list: the catalog has 25 GPU types, and no list
# (tp, pp, precision, objective) has more than a handful of meaningful items.
MAX_COLLECTION_ITEMS = 1_000

# ---- config.json

# Bytes in one config.json (real ones are 1-10 KB).
MAX_CONFIG_JSON_BYTES = 1024 * 1024
# Any size in a config.json (layers, hidden size, heads, vocabulary, context). Real
# values top out near 10^7 (context length); 2^31 keeps them plain 32-bit integers.
MAX_CONFIG_INT = 2**31 - 1
# Layers of one model: real models have at most a few hundred (Nemotron-H 56B: 118), and the
# parsers build one entry per layer (layer_types, MoE interleaving, hybrid patterns), so a
# typo like 2^31 layers must be refused before any list is built.
MAX_LAYERS = 10_000

# ---- what all of the above buys

# Smallest engine efficiency (a fraction of the measured kernels' speed) a calibration may
# hold: the lowest fitted value is 0.415 (vLLM's compute-bound kernels on ROCm); an engine
# at under a tenth of its kernels' speed is a broken fit or a typo, and a value near 0 makes
# every prediction astronomically slow (issue 25 item 3: 1e-300 printed a 300-digit TTFT).
MIN_ENGINE_EFFICIENCY = 0.1

# Largest coefficient of variation of inter-arrival times a stream may have: bursty
# production traffic is a few times Poisson's 1, and 1e300 overflowed the queueing formulas
# (Kingman's (ca² + cs²)/2) into tracebacks; beyond 100 the approximations say nothing.
MAX_BURSTINESS = 100.0

# Largest relative weight of one length bucket: weights are shares, normalised by their sum,
# and two weights of 1e308 summed to infinity (a division by zero); a ratio of 10^9 between
# buckets is already far beyond any mix a simulation of at most 200,000 requests can show.
MAX_BUCKET_WEIGHT = 1e9

# Requests one simulation runs (a sampled stream, a trace, a plan's verifying run): the
# event loop holds a few arrays of this length, and 200,000 requests of a 70B replica
# simulate in about a minute here; a bigger sample tightens no percentile a plan uses.
MAX_SIMULATED_REQUESTS = 200_000

# Peak memory of one command on any input: with the limits above, a plan, prediction,
# sweep or file stays far below this (~150 MB for a CLI plan); the fuzz suites assert it.
MAX_PROCESS_MEMORY_BYTES = 2 * 1024**3

# ---- the web server

# Wall-clock seconds one web request may run before it is stopped (the solver has its
# own, shorter limit; this one is the server's backstop against any other slow path).
WEB_REQUEST_TIMEOUT_S = 120.0
# Seconds `guideopt serve` waits for running requests on SIGTERM/Ctrl-C before it
# stops them.
WEB_SHUTDOWN_GRACE_S = 3.0
# Bytes in one web request body (a request is ~1 KB).
MAX_WEB_BODY_BYTES = 256 * 1024

# ---- measured runs (`guideopt calibrate`)

# Floating-point operations per weight and generated token: every output token passes each
# active weight once, a multiply and an add. With the GPU's densest datasheet tensor peak
# (FP4 or FP8 where it has one, dense) this bounds a run's output tokens/s from above:
# num_gpus x peak / (2 x the model's active GEMM weights). A run beyond it names the wrong
# model or GPU count, or its numbers are not tokens/s (Llama-3.1-8B on one H100: ~132k tok/s;
# the closest of shared/data/measured/e2e.csv's rows, Llama-2-70B FP8 on one H200 at batch
# 1024, reaches 28 % of its bound).
FLOPS_PER_WEIGHT_PER_TOKEN = 2.0
# Longest mean latency (TTFT, TPOT or E2E) a benchmark run may report: one day. Serving
# runs last minutes; a day-long mean is a unit error (ns or µs read as ms) or a typo.
MAX_MEASURED_LATENCY_MS = 86_400_000.0
# Relative slack of the checks between a run's own numbers (output_throughput against
# total_output_tokens / duration; requests in flight against max_concurrency): vLLM and
# SGLang compute them from one timer and print full floats, so 1 % covers any rounding.
RUN_CONSISTENCY_SLACK = 0.01

# ---- request lengths and trace files (issue 25 item 5)

# Buckets of one length table the analytic stream model prices. Its cost grows with options
# x buckets: a 5,000-row trace kept as its ~4,990 distinct pairs planned for 221 s in 2.4 GB
# (8B, --rate 5, $20/h); a named mix has 11 x 11 = 121 quantile buckets, so a trace or a
# bucket list with more distinct pairs is condensed into the same quantile cells
# (costs/lengths.py): the same plan then takes ~25 s in 190 MB, its sustainable rate within
# 0.3 % and P90 TTFT/TPOT within 3 % of the full table's (tests/test_bounds_traces.py).
MAX_LENGTH_BUCKETS = 128

# Bytes of one trace file, checked before it is opened. A row of lengths is 10-60 bytes
# (200,000 rows, the most a simulation runs, are under 12 MB even with arrival times); 64 MiB
# leaves room for rows that carry a few extra fields, and reading that much line by line
# takes seconds. Rows are counted while reading too: a 40 MB file of 5,000,000 short rows
# stops at row 200,001 (it was parsed whole, 45-52 s and 1.2 GB, before being refused).
MAX_TRACE_FILE_BYTES = 64 * 1024**2
# Characters of one trace line: a row is a few numbers; a file with no line ends would
# otherwise be held whole. 128 Ki is the csv module's own field limit.
MAX_TRACE_LINE_CHARS = 128 * 1024

# Bytes of one calibration overlay (`--calibration FILE`), checked before it is read: the
# overlays `guideopt calibrate` writes hold a few engine entries of ~10 numbers each (1-5 KB);
# a 200 MB overlay was parsed for 92 s before anything was said.
MAX_OVERLAY_FILE_BYTES = 1024**2

# Scheduler steps that compute prompt tokens in one simulation (`guideopt simulate`), counted
# before it runs as Σ input_len / token_budget: each is simulated on its own, 25-110 µs of CPU
# measured (8B on one H100, budgets 1-16), so this many take up to about a minute, as the
# largest sampled run does (MAX_SIMULATED_REQUESTS), with progress shown. Sensible budgets are
# far below it (2,000 prompts of 1,024 tokens at 2,048 per step: 1,000 steps; a 200,000-row
# trace of ~1,000-token prompts: ~100,000); `--token-budget 1` on those 2,000 prompts (2
# million steps) ran 172 s with no output.
MAX_SIMULATED_PROMPT_STEPS = 500_000
