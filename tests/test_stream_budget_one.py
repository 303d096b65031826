"""Issue 25, item 8: a token budget of 1 (every prompt token a step of its own).

The stream model's mixed-step share came from a chain of prompt arrivals alone, which
undercounts a prompt that keeps the steps mixed for many passes: at a budget of 1 token no
rate balanced its flow, the model said 0 req/s and ``capacity --rate 5 --split 1`` "needs
more than 1024 replicas" while the simulator ran such a replica stably. The share is now at
least what carries the prompt tokens within the room (flow balance)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from guideopt.analyses.simulate import configuration
from guideopt.cli import main
from guideopt.costs.lengths import fixed_lengths
from guideopt.costs.stream import steady_state
from guideopt.costs.stream_search import sustainable_rate
from guideopt.model.workload import SimulateRequest

LLAMA8B = "meta-llama/Llama-3.1-8B"


def _configuration(token_budget: int):
    req = SimulateRequest.model_validate(
        {
            "model": LLAMA8B,
            "gpu": "h100-sxm",
            "token_budget": token_budget,
            "workload": {"rate_rps": 1, "lengths": {"input_len": 1024, "output_len": 256}},
        }
    )
    lengths = fixed_lengths(1024, 256)
    return configuration(req, lengths, 1280), lengths


def _budget_one():
    return _configuration(1)


def test_a_budget_of_one_token_sustains_one_request_at_a_time() -> None:
    conf, lengths = _budget_one()
    assert float(conf.options.running_cap[0]) == 1.0  # vLLM caps max_num_seqs at the budget
    rate = float(sustainable_rate(conf.arch, conf.options, lengths)[0])
    st = steady_state(conf.arch, conf.options, lengths, np.array([rate]))
    residence = float(st.residence_s[0])
    # one slot: stable while one request's time in the replica is below the time between arrivals
    assert 0.9 < rate * residence < 1.0
    # ... which is about 1,024 prompt steps and 255 decode steps
    assert residence / float(st.tau_dec_s[0]) * 1.05 >= 1024 + 255


def test_flow_balance_leaves_single_pass_prompts_as_they_were() -> None:
    """Where the chain of arrivals already carries the prompt tokens (a prompt in one pass),
    the share is unchanged: the steady state at a budget of 8,192 meets flow balance on its own."""
    conf, lengths = _configuration(8192)
    st = steady_state(conf.arch, conf.options, lengths, np.array([5.0]))
    flow_share = 5.0 * 1024 * float(st.tau_s[0]) / float(st.room[0])
    assert float(st.mixed_share[0]) > flow_share


def test_capacity_at_a_budget_of_one_token_gives_a_count() -> None:
    res = CliRunner().invoke(
        main,
        ["capacity", "--model", LLAMA8B, "--gpu", "h100-sxm", "--rate", "5", "--split", "1", "--input-len", "1024", "--output-len", "256"],
    )
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    replicas = int(line.split(": ")[1].split(" replica")[0])
    conf, lengths = _budget_one()
    per_replica = float(sustainable_rate(conf.arch, conf.options, lengths)[0])
    assert replicas == int(np.ceil(5.0 / per_replica - 1e-9))
