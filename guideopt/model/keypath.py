"""Key paths into a request (``gpus.l4.max``, ``precision[1]``): how a field is named in messages."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

Segment = str | int  # a mapping key (str) or a list index (int)
KeyPath = tuple[Segment, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def render_path(path: Sequence[Segment]) -> str:
    """``("gpus", "l4", "max")`` -> ``gpus.l4.max``; list indices as ``precision[1]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            key = seg if _PLAIN_KEY.fullmatch(seg) else json.dumps(seg)
            out += f".{key}" if out else key
    return out


def parse_path(text: str) -> KeyPath:
    """The inverse of :func:`render_path` (for key paths named in messages)."""
    out: list[Segment] = []
    for part in text.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if not m:
            out.append(part)
            continue
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(out)


def leading_key(message: str) -> str | None:
    """The key path a message starts with (``gpus.l4: ...``), if any."""
    head, sep, _ = message.partition(": ")
    if sep and head and " " not in head and parse_path(head):
        return head
    return None


def one_line(text: str) -> str:
    """Escape characters that would break a message over lines or hide in a terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
