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

# A multiply-accumulate is two floating-point operations (the convention of every
# datasheet TFLOPS figure and of GUIDE's roofline analyser).
FLOPS_PER_MAC = 2
