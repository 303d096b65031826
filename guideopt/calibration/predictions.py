"""Predict every measured configuration at once, for ``validate`` and the engine fit.

Static batches and closed loops go through ``predict --csv``'s vectorised path
(``analyses/predict_batch.predict_many``, checked row for row against ``predict``), one
call for all of them; open-loop runs through the stream model, one call per configuration
for all its rates (``open_loop.py``). A fit predicts every configuration a few dozen times
(once per term it moves), so this is most of its time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from guideopt.calibration.open_loop import OPEN_LOOP_KEY, predict_open_loop
from guideopt.errors import GuideoptError

Outcome = dict[str, float] | GuideoptError


def request_key(request: Mapping[str, Any]) -> tuple:
    return tuple(sorted(request.items()))


def predict_requests(requests: Iterable[Mapping[str, Any]], catalog: Any) -> dict[tuple, Outcome]:
    """Each distinct request's metrics by name, or the error that refused it."""
    from guideopt.analyses.predict_batch import predict_many
    from guideopt.model.predict_request import PredictRequest
    from guideopt.model.validation import validated

    distinct = {request_key(r): r for r in requests}
    out: dict[tuple, Outcome] = {}
    sweeps: dict[tuple, list[tuple]] = defaultdict(list)  # one open-loop configuration, its rates
    static: list[tuple] = []
    for key, req in distinct.items():
        if OPEN_LOOP_KEY in req:
            sweeps[request_key({k: v for k, v in req.items() if k != OPEN_LOOP_KEY})].append(key)
            continue
        try:
            static.append((key, validated(PredictRequest, req)))
        except GuideoptError as exc:
            out[key] = exc
    for keys in sweeps.values():
        try:
            outcomes: list[Outcome] = predict_open_loop(distinct[keys[0]], [distinct[k][OPEN_LOOP_KEY] for k in keys], catalog)
        except GuideoptError as exc:
            outcomes = [exc] * len(keys)
        out.update(zip(keys, outcomes))
    out.update(zip((k for k, _ in static), predict_many([r for _, r in static], catalog)))
    return out


class PredictionTable:
    """``predict_fn`` for ``validate``: every case's configuration predicted up front, in one go."""

    def __init__(self, requests: Iterable[Mapping[str, Any]], catalog: Any) -> None:
        self.outcomes = predict_requests(requests, catalog)

    def __call__(self, request: Mapping[str, Any]) -> dict[str, float]:
        outcome = self.outcomes[request_key(request)]
        if isinstance(outcome, GuideoptError):
            raise outcome
        return outcome
