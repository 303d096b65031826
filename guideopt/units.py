"""Unit conversions and physical constants used across guideopt.

Inside the library every quantity is SI: bytes, seconds, FLOP/s, bytes/s.
Conversion happens only at the edges (catalog loading and output rendering).
"""

from __future__ import annotations

BYTES_PER_GB = 1e9  # decimal gigabyte, as in "13.5 GB of weights"
BYTES_PER_GIB = 1024**3  # binary gibibyte, as in "an 80 GiB HBM stack"
BYTES_PER_MIB = 1024**2
FLOPS_PER_TFLOPS = 1e12
BYTES_PER_S_PER_GB_S = 1e9
S_PER_MS = 1e-3
S_PER_US = 1e-6
MS_PER_S = 1e3
SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1_000_000

# A multiply-accumulate is two floating-point operations (the convention of every
# datasheet TFLOPS figure and of GUIDE's roofline analyser).
FLOPS_PER_MAC = 2

# ---- The solver's integer scales. CP-SAT takes integer coefficients only, so every
# quantity a model sees is an integer count of these units (resolutions below which two
# plans tie for the solver).
MILLI_USD_PER_USD = 1000  # prices in milli-dollars per hour
MILLI_LOAD_PER_LOAD = 1000  # stream load (requests/s or clients) in thousandths
US_PER_S = 1_000_000  # times in microseconds
US_PER_MS = 1000
DECI_TOK_S_PER_TOK_S = 10  # throughput in tenths of a token per second
CENTS_PER_USD = 100  # suggested budgets are rounded up to the cent

# Tolerance when a scaled float is rounded to an integer on the conservative side
# (ceil for prices, floor for throughput): a product such as 0.44 · 1000 lands at
# 439.99999999999994 in binary floating point; it must count as 440, not 439.
ROUNDING_EPS = 1e-9
