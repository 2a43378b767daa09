"""Scenario fixtures for the tests: `simulator.scenario` (the real bot on the loopback voice channel with
scripted members), plus `OwnVoiceRelay`, a misbehaving network that hands the bot its own packets back."""

from __future__ import annotations

from simulator.scenario import (  # noqa: F401  (re-exported for the scenario tests)
    ALICE,
    BOB,
    CHEN,
    BotEars,
    JoinInteraction,
    ListenerTap,
    Said,
    Scenario,
    bot_in_channel,
    clip_voiced,
    join_with_command,
    scenario_settings,
    spoken_line,
    voiced_span,
    write_persona,
)
from simulator.member import SimMember
from simulator.server import LoopbackVoiceServer


class OwnVoiceRelay:
    """The network hands the bot its own packets back: every frame the bot sends is re-sent to it, under its
    own SSRC, transport-encrypted with its current key (a misbehaving server or a looped-back stream)."""

    def __init__(self, server: LoopbackVoiceServer, member: SimMember) -> None:
        self.server = server
        self.sent = 0
        self._seq = 0
        original = member._on_bot_frame

        def relay(from_user_id: int, ssrc: int, frame: bytes, arrival: float) -> None:
            original(from_user_id, ssrc, frame, arrival)
            self._seq = (self._seq + 1) & 0xFFFF
            packet = server.media.encrypt_for_bot(
                sequence=self._seq, timestamp=(self._seq * 960) & 0xFFFFFFFF, ssrc=ssrc, payload=frame
            )
            if packet is not None:
                server.media.send_to_bot(packet)
                self.sent += 1

        member._on_bot_frame = relay  # type: ignore[method-assign]
