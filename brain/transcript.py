"""A pretrained model's prompt: the chat messages of `brain.prompt.build_messages` as a transcript to continue.

A base model (Gemma 3 270M as shipped on PyPI) was never taught a chat template; it continues text. So the
persona's short description opens a transcript, the example dialogue and the room's lines follow as
`Name: words` lines (stage notes such as the situation stay in parentheses), and the prompt ends with the
bot's label. The model writes the bot's line; generation stops at the line's end, before it writes anyone
else's. The layout asks `build_messages` for labelled lines (`PromptLayout.transcript`, no `speaker_once`).
"""

from __future__ import annotations

from typing import Sequence

PREFACE = "The following is a transcript of a friendly voice chat."
LINE_STOPS = ("\n",)  # one spoken line per turn: the next line is someone else's


def render_transcript(messages: Sequence[dict]) -> str:
    """The transcript prompt for `messages`; the bot's name is the system message's `name`."""
    if not messages or messages[0].get("role") != "system":
        raise ValueError("a transcript needs the system message first")
    name = str(messages[0].get("name") or "Assistant")
    lines = [f"{PREFACE} {messages[0]['content'].strip()}".strip(), ""]
    for message in messages[1:]:
        content = str(message.get("content", "")).strip()
        if not content:
            continue
        if message["role"] == "assistant":
            lines.append(f"{name}: {' '.join(content.split())}")
        else:
            lines.extend(line.strip() for line in content.splitlines() if line.strip())
    lines.append(f"{name}:")
    return "\n".join(lines)
