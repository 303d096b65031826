"""What each engine's scheduler does, as far as the simulator models it.

Prompts arriving mid-decode: engines with chunked prefill (vLLM V1, SGLang, FastGen's
Dynamic SplitFuse) fuse prompt chunks with the running decodes inside the token budget,
decodes first; engines without it (TRT-LLM with ``enable_chunked_context`` off, the
catalog default) run a prefill-only step of whole prompts while decodes wait.

When the KV cache runs out:
* vLLM (V1 scheduler ``schedule()``): preempts the most recently admitted running
  request, frees its blocks, and later recomputes its prompt plus generated tokens as a
  new prefill (``PreemptionMode.RECOMPUTE``, the V1 default). → ``recompute``
* SGLang: ``retract_decode`` takes running requests back to the waiting queue and
  recomputes them (radix cache off in the measured setups). → ``recompute``
* TRT-LLM: the default capacity scheduler policy ``GUARANTEED_NO_EVICT`` admits a
  request only when the KV for its whole prompt and maximum output is free, so nothing
  is ever evicted. → ``reserve``
* DeepSpeed-FastGen: the ragged scheduler only schedules a sequence when its KV blocks
  can be allocated; a decode that cannot get a block sits out the step, keeping its
  cache (ASSUMED from DeepSpeed-MII's ``can_schedule`` check; not verified). → ``stall``
"""

from __future__ import annotations

from enum import Enum


class KvPolicy(str, Enum):
    RECOMPUTE = "recompute"
    RESERVE = "reserve"
    STALL = "stall"


KV_POLICY_BY_FRAMEWORK = {
    "vllm": KvPolicy.RECOMPUTE,
    "sglang": KvPolicy.RECOMPUTE,
    "trtllm": KvPolicy.RESERVE,
    "fastgen": KvPolicy.STALL,
}


def kv_policy(engine: str) -> KvPolicy:
    """The KV policy of an engine family (``Framework.calibration_id``: every version of vLLM
    is ``vllm``)."""
    return KV_POLICY_BY_FRAMEWORK.get(engine, KvPolicy.RECOMPUTE)
