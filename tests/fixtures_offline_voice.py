"""A discord.py voice protocol that connects to nothing, for slash-command tests that drive /join through
SimCord (which has no voice servers)."""

from __future__ import annotations

from typing import Any

import discord


class OfflineVoiceClient(discord.VoiceProtocol):
    """A voice protocol that connects to nothing; `fail_with` makes its handshake fail instead."""

    fail_with: BaseException | None = None
    instances: list["OfflineVoiceClient"] = []

    def __init__(self, client: discord.Client, channel: discord.abc.Connectable) -> None:
        super().__init__(client, channel)
        self.connect_kwargs: dict[str, Any] = {}
        self.connected = False
        OfflineVoiceClient.instances.append(self)

    async def connect(self, **kwargs: Any) -> None:
        self.connect_kwargs = kwargs
        if OfflineVoiceClient.fail_with is not None:
            raise OfflineVoiceClient.fail_with
        self.connected = True

    async def disconnect(self, *, force: bool = False) -> None:
        self.connected = False
        self.cleanup()

    def is_connected(self) -> bool:
        return self.connected

    async def on_voice_state_update(self, data: Any) -> None:
        pass

    async def on_voice_server_update(self, data: Any) -> None:
        pass
