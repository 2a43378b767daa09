"""The bot's voice in the channel: the session's player (a discord.AudioSource) on discord.py's VoiceClient.

Between lines the bot sends nothing (Discord shows it speaking only while it speaks): the VoiceClient's
player is started with a line's first audio and stopped when the line is over. While someone speaks over
the bot, its voice is turned down at once (it talks on), then paused if they go on (silence goes out, what
is queued stays), and brought back after a backchannel.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DUCK_GAIN = 10 ** (-12 / 20)  # -12 dB: clearly softer, still understood


class VoiceOutput:
    def __init__(self, player: Any, voice_client: Any = None, *, name: str = "voice") -> None:
        self.player = player
        self.voice_client = voice_client
        self._name = name

    def _client(self) -> Any:
        vc = self.voice_client
        return vc if vc is not None and hasattr(vc, "play") else None

    def ensure_playing(self) -> None:
        vc = self._client()
        if vc is None:
            return
        try:
            if vc.is_connected() and not vc.is_playing():
                vc.play(self.player, after=self._stopped)
        except Exception:
            log.exception("%s: could not start playback", self._name)

    def stop_playing(self) -> None:
        vc = self._client()
        if vc is None:
            return
        try:
            if vc.is_playing():
                vc.stop()
        except Exception:
            log.debug("%s: stopping playback failed", self._name, exc_info=True)

    def duck(self) -> None:
        """Turn the voice down (someone speaks over it); `resume` brings it back."""
        set_gain = getattr(self.player, "set_gain", None)
        if set_gain is not None:
            set_gain(DUCK_GAIN)

    def hold_new_runs(self, hold: bool) -> None:
        """While someone speaks over the turned-down voice, it does not start again after a pause of its own."""
        hold_runs = getattr(self.player, "hold_new_runs", None)
        if hold_runs is not None:
            hold_runs(hold)

    def pause(self) -> None:
        pause = getattr(self.player, "pause", None)
        if pause is not None:
            pause()

    def resume(self) -> None:
        """Go on at full voice, whether the voice was paused or turned down."""
        resume = getattr(self.player, "resume", None)
        if resume is not None:
            resume()
        set_gain = getattr(self.player, "set_gain", None)
        if set_gain is not None:
            set_gain(1.0)

    def _stopped(self, error: Exception | None) -> None:
        if error is not None:
            log.error("%s: playback stopped with an error: %s", self._name, error)
