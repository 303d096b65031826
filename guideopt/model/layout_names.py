"""A replica's layout in words, as people who serve MoE models name them (TP, TEP, DEP)."""

from __future__ import annotations


def layout_words(tp: int, pp: int, attention_dp: int = 1, moe_ep: int = 1) -> str:
    """``tp8·pp1``; ``TEP8 (tp8, experts EP 8)``; ``DEP8 (attention DP 8, experts EP 8)``."""
    stage = f"·pp{pp}" if pp > 1 else ""
    if attention_dp > 1 and moe_ep > 1:
        tp_part = f"tp{tp}, " if tp > 1 else ""
        return f"DEP{tp * attention_dp}{stage} ({tp_part}attention DP {attention_dp}, experts EP {moe_ep})"
    if attention_dp > 1:
        return f"tp{tp}{stage} x attention DP {attention_dp} (experts TP {tp * attention_dp})"
    if moe_ep > 1:
        return f"TEP{tp}{stage} (tp{tp}, experts EP {moe_ep})"
    return f"tp{tp}·pp{pp}"


def layout_code(tp: int, pp: int, attention_dp: int = 1, moe_ep: int = 1) -> str:
    """The short form for tables: ``tp8·pp1``, ``TEP8``, ``DEP8·pp2``, ``tp2·DEP8``, ``tp1·DP8``
    (attention DP with experts split by TP)."""
    stage = f"·pp{pp}" if pp > 1 else ""
    if attention_dp > 1 and moe_ep > 1:
        return f"{f'tp{tp}·' if tp > 1 else ''}DEP{tp * attention_dp}{stage}"
    if attention_dp > 1:
        return f"tp{tp}·DP{attention_dp}{stage}"
    if moe_ep > 1:
        return f"TEP{tp}{stage}"
    return f"tp{tp}·pp{pp}"
