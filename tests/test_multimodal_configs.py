"""Issue 25 item 8: a multimodal config.json keeps the language model under text_config.
Llama 4's is read whole; Gemma 3's text_config leaves out what transformers' Gemma3TextConfig
fills in (vocab_size, context, tied embeddings, 5 local : 1 global layers), so it was
refused ("lacks 'vocab_size'") and would have priced every layer as a sliding window."""

from __future__ import annotations

from guideopt.model.hf_config import arch_from_hf_config

# google/gemma-3-27b-it's config.json, the vision tower left out (it is not read).
GEMMA3_27B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
}


def test_gemma3_multimodal_config_reads_its_text_config_with_the_family_defaults() -> None:
    arch = arch_from_hf_config(GEMMA3_27B, "google/gemma-3-27b-it")
    assert (arch.vocab_size, arch.max_position_embeddings, arch.tie_word_embeddings) == (262_208, 131_072, True)
    assert [(g.count, g.attention.window) for g in arch.layer_groups] == [(52, 1024), (10, None)]  # every 6th layer global
    assert 26.5e9 < arch.num_params < 27.5e9  # "27B" (the vision tower's 0.4 B not counted)


def test_a_written_key_beats_the_family_default() -> None:
    text = {**GEMMA3_27B["text_config"], "vocab_size": 1000, "sliding_window_pattern": 2}
    arch = arch_from_hf_config({**GEMMA3_27B, "text_config": text}, "g")
    assert arch.vocab_size == 1000 and [g.count for g in arch.layer_groups] == [31, 31]
