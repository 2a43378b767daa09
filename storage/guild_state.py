"""One guild's state (chosen persona, captions channel, memory on/off, recall scope) and its validation:
the types the guild store (`storage.guild_store`) and the old `guilds.json` import (`storage.legacy`) share."""

from __future__ import annotations

from dataclasses import dataclass

from storage.schema import RECALL_SCOPES


@dataclass(frozen=True)
class GuildState:
    persona: str | None = None  # persona name chosen with /persona set; None = the default persona
    captions_channel_id: int | None = None  # text channel where the bot posts what it heard and said
    memory_enabled: bool = True  # /memory off turns remembering off for the whole server
    recall: str = "present"  # /memory recall: whose memories a reply may use (storage.schema.RECALL_SCOPES)


def validate_state(state: GuildState) -> None:
    """Raise ValueError naming the bad field."""
    persona = state.persona
    if persona is not None and (not isinstance(persona, str) or not persona.strip()):
        raise ValueError(f"persona: expected a name or null, got {persona!r}")
    channel = state.captions_channel_id
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int) or channel <= 0):
        raise ValueError(f"captions_channel_id: expected a channel id or null, got {channel!r}")
    if not isinstance(state.memory_enabled, bool):
        raise ValueError(f"memory_enabled: expected true or false, got {state.memory_enabled!r}")
    if state.recall not in RECALL_SCOPES:
        raise ValueError(f"recall: expected one of {', '.join(RECALL_SCOPES)}, got {state.recall!r}")
