"""A benchmark protocol applied to a simulate request (``simulate --protocol ID``).

The protocol (``catalogs/protocols/<id>.yaml``, schema in ``model/protocol.py``) decides how
load arrives, how lengths are drawn, which requests are warm-up and how many run; the
request gives the rest (the configuration, the rate or client count, the nominal lengths).
``expand_protocol`` turns a request naming a protocol into the plain request that runs it:

* arrivals: a Poisson protocol needs a rate and refuses a client count or a burstiness; a
  closed loop needs a client count and refuses a rate; a burst sends every request at once
  (a closed loop of as many clients as requests, all starting together);
* lengths: ``fixed`` needs an input and an output length; ``uniform_range`` turns them into
  equal-weight runs of its integer range (``model/protocol.py`` ``range_cells``) crossed
  into buckets; ``dataset`` uses its length mix unless the request names lengths;
* requests: ``requests_per_client`` × clients (or the protocol's ``num_requests``) when the
  request does not give ``num_requests``, plus the warm-up requests, which run first and
  are left out of the metrics (``warmup_fraction``).

A conflict between the request and its protocol is a ``InvalidRequestError`` naming the
request's field and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from guideopt.catalog import Catalog
from guideopt.errors import InvalidRequestError
from guideopt.model.protocol import Arrival, BenchmarkProtocol, LengthSampling, range_cells
from guideopt.model.validation import validated
from guideopt.model.workload import DEFAULT_NUM_REQUESTS, SimulateRequest


def expand_protocol(request: SimulateRequest | Mapping[str, Any], cat: Catalog) -> tuple[SimulateRequest, BenchmarkProtocol | None]:
    """The request as it runs (validated, its ``protocol`` applied and cleared) and the protocol (None: none named)."""
    if isinstance(request, SimulateRequest):
        if request.protocol is None:
            return request, None
        data = request.model_dump(exclude_unset=True)
    else:
        data = _plain(request)
        if data.get("protocol") is None:
            return validated(SimulateRequest, data), None
    proto = cat.protocol(str(data["protocol"]))
    wl = _plain(data.get("workload") or {})
    _check_arrival(proto, wl)
    wl["lengths"] = _lengths(proto, _plain(wl.get("lengths") or {}))
    clients = wl.get("concurrency")
    measured = wl.get("num_requests")
    if measured is None:
        measured = proto.requests_per_client * clients if proto.requests_per_client and clients else proto.num_requests
    warm = proto.warmup_requests_per_client * (clients or 1)
    if warm:
        if data.get("warmup_fraction"):
            raise InvalidRequestError(f"protocol {proto.id} leaves out its own {warm} warm-up requests (drop it)", "warmup_fraction")
        total = (measured or DEFAULT_NUM_REQUESTS) + warm
        wl["num_requests"], data["warmup_fraction"] = total, warm / total
    elif measured is not None:
        wl["num_requests"] = measured
    if proto.arrival is Arrival.BURST:  # every request at t = 0: one client per request, all starting together
        wl["concurrency"] = wl.get("num_requests") or DEFAULT_NUM_REQUESTS
    return validated(SimulateRequest, {**data, "workload": wl, "protocol": None}), proto


def uniform_buckets(proto: BenchmarkProtocol, input_len: int, output_len: int) -> list[dict[str, Any]]:
    """The protocol's uniform ranges around the nominal lengths as weighted (input, output) buckets,
    the two sides drawn independently (crossed)."""
    ins = range_cells(*proto.length_range(input_len))
    outs = range_cells(*proto.length_range(output_len))
    return [{"input_len": i, "output_len": o, "weight": float(wi * wo)} for i, wi in ins for o, wo in outs]


def _plain(value: Any) -> dict[str, Any]:
    """A mapping (or a schema object) as a plain dict of the keys given."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    return dict(value) if isinstance(value, Mapping) else {}


def _check_arrival(proto: BenchmarkProtocol, wl: dict[str, Any]) -> None:
    rate, clients = wl.get("rate_rps"), wl.get("concurrency")
    name = f"protocol {proto.id}"
    if proto.arrival is Arrival.POISSON:
        if clients is not None:
            raise InvalidRequestError(
                f"{name} is an open loop at a rate (Poisson arrivals): give a rate (--rate R) instead", "workload.concurrency"
            )
        if rate is None:
            raise InvalidRequestError(
                f"{name} is an open loop at a rate (Poisson arrivals): give its target rate (--rate R)", "workload.rate_rps"
            )
        if wl.get("burstiness") not in (None, 1, 1.0):
            raise InvalidRequestError(f"{name} has Poisson arrivals (burstiness 1): drop it", "workload.burstiness")
    elif proto.arrival is Arrival.CLOSED_LOOP:
        if rate is not None:
            raise InvalidRequestError(
                f"{name} is a closed loop of clients: give the client count (--concurrency C) instead", "workload.rate_rps"
            )
        if clients is None:
            raise InvalidRequestError(
                f"{name} is a closed loop of clients: give the client count (--concurrency C)", "workload.concurrency"
            )
    else:
        for key, value in (("workload.rate_rps", rate), ("workload.concurrency", clients)):
            if value is not None:
                raise InvalidRequestError(f"{name} sends every request at t = 0: drop it (give the number of requests)", key)


def _lengths(proto: BenchmarkProtocol, lengths: dict[str, Any]) -> dict[str, Any]:
    """The request's lengths under the protocol (see the module)."""
    if proto.length_sampling is LengthSampling.DATASET:
        return lengths or {"mix": proto.length_mix}
    inp, out = lengths.get("input_len"), lengths.get("output_len")
    other = sorted(k for k, v in lengths.items() if v is not None and k not in ("input_len", "output_len"))
    if inp is None or out is None or other:
        how = "draws lengths around" if proto.length_sampling is LengthSampling.UNIFORM_RANGE else "runs at"
        fix = f"protocol {proto.id} {how} a given input and output length"
        if other:
            raise InvalidRequestError(f"{fix}, not a {other[0]}: give --input-len N and --output-len N instead", "workload.lengths")
        missing = "workload.output_len" if inp is not None else "workload.input_len"
        raise InvalidRequestError(f"{fix}: give --input-len N and --output-len N", missing)
    if proto.length_sampling is LengthSampling.FIXED or (proto.length_range(inp) == (inp, inp) and proto.length_range(out) == (out, out)):
        return {"input_len": inp, "output_len": out}
    return {"buckets": uniform_buckets(proto, int(inp), int(out))}
