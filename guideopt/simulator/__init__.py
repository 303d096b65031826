"""Discrete-event simulation of one replica serving a request stream, step by step.

``engine.simulate`` replays requests (sampled or from a trace) through the engine's
continuous-batching scheduler; step times come from ``costs.step`` (tabulated once per
configuration by ``table.StepTable``); ``report`` turns the per-request times into
percentiles, throughput, goodput and time series.
"""
