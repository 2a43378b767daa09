"""A simulated voice-channel member: its own SSRC, its own DAVE client (davey or libdave), real Opus both ways.

Create members through the server (``member = await server.add_member(user_id, "Alice")``). What a member does:

* ``await member.speak(pcm_or_wav, at=None)``: Opus-encodes 20 ms frames, DAVE-encrypts them with its own
  DAVE client (`simulator.member_dave`: ``dave="davey"`` or ``"libdave"``, Discord's own library) when the call is
  end-to-end encrypted and its session is ready, and the server sends them to
  the bot transport-encrypted, paced in real time by the event loop clock. Several members may speak at once.
  Network knobs (`NetworkKnobs`): packet loss, reordering, RTP padding, header extensions, interleaved RTCP
  receiver reports (seeded, deterministic). Returns a `SpeakReport` (frames, sent, dropped, DAVE-encrypted...).
* It hears the bot: every packet the bot sends is transport-decrypted by the server, then DAVE-decrypted by this
  member's session and Opus-decoded: ``member.received_pcm()`` (48 kHz stereo), ``member.utterance_starts()``
  (monotonic arrival time of the first voiced packet of each bot utterance, for latency measurement),
  ``await member.wait_for_audio(seconds)``.
* ``await member.leave()`` (op 13 + MLS Remove), ``await member.rejoin()`` (new SSRC, new key package, op 11 + Add).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from discord import opus

from . import audio_files
from .member_dave import MemberDave, make_member_dave

if TYPE_CHECKING:
    from .server import LoopbackVoiceServer

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"
DAVE_MAGIC = b"\xfa\xfa"
FRAME_SECONDS = 0.020
# Opus encoding (~0.5-2 ms a frame) runs off the event loop, on threads of its own so that busy shared
# executors (STT, TTS) cannot delay a member's packets.
_OPUS_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sim-opus")


@dataclass
class NetworkKnobs:
    """What the network (and Discord's server) does to a member's packets on the way to the bot."""

    loss: float = 0.0  # probability a packet is dropped
    reorder: float = 0.0  # probability a packet is held back and sent after the next one
    padding: float = 0.0  # probability a packet carries RTP padding (P bit)
    padding_bytes: int = 7
    extension: float = 0.5  # probability a packet carries a 0xBEDE header extension (Discord sends them often)
    rtcp_every: int = 0  # > 0: an RTCP receiver report (PT 201) after every N voice packets, as Discord sends
    seed: int | None = None  # None: seeded from the user id


@dataclass
class SpeakReport:
    """What one `SimMember.speak` call did."""

    start: float  # monotonic time the first packet was due
    frames: int = 0
    sent: int = 0
    dropped: int = 0
    reordered: int = 0
    dave_encrypted: int = 0
    plain: int = 0  # voice frames sent without DAVE (call not encrypted, or this member not in the group yet)
    silence: int = 0  # Opus silence frames (never DAVE-encrypted, by the protocol)
    rtcp: int = 0  # RTCP packets sent alongside (NetworkKnobs.rtcp_every)


@dataclass
class _Heard:
    """Audio received from one source (the bot), bounded."""

    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    packets: int = 0
    utterance_starts: list[float] = field(default_factory=list)
    last_voiced: float = -1e9
    decoder: opus.Decoder | None = None
    ssrc: int | None = None  # a new SSRC (the bot reconnected) gets a fresh decoder


class SimMember:
    """One simulated member of the voice channel (see the module docstring)."""

    VOICED_PEAK = 200  # int16 peak above which a decoded 20 ms frame counts as voiced
    UTTERANCE_GAP = 0.3  # seconds without voiced packets that separate two bot utterances
    MAX_HEARD_SECONDS = 600.0  # per source; older audio is dropped

    def __init__(
        self,
        server: LoopbackVoiceServer,
        user_id: int,
        name: str,
        *,
        knobs: NetworkKnobs | None = None,
        dave: str = "davey",
    ):
        self.server = server
        self.dave_impl = dave
        self.user_id = user_id
        self.name = name
        self.knobs = knobs or NetworkKnobs()
        self._rng = random.Random(self.knobs.seed if self.knobs.seed is not None else user_id)
        self.ssrc = 0
        self.present = False
        self.dave: MemberDave | None = None
        self.in_group = False  # in the bot's current MLS group (welcomed, commit processed)
        self._encoder = opus.Encoder()
        self._seq = self._rng.randrange(0, 1 << 16)
        self._timestamp = self._rng.randrange(0, 1 << 32)
        self._heard: dict[int, _Heard] = {}
        self._heard_event = asyncio.Event()
        self._speak_lock = asyncio.Lock()
        self.stats = {"received": 0, "dave_decrypted": 0, "plain": 0, "dave_failed": 0, "decode_failed": 0}

    def __repr__(self) -> str:
        return f"<SimMember {self.name} id={self.user_id} ssrc={self.ssrc} present={self.present}>"

    # --- membership ----------------------------------------------------------------------------------------------

    async def leave(self) -> None:
        """Leave the channel: the bot gets op 13 and an MLS Remove proposal to commit."""
        await self.server._member_leave(self)

    async def rejoin(self) -> None:
        """Come back with a new SSRC and a fresh DAVE key package."""
        await self.server._member_join(self)

    def group(self) -> MemberDave:
        """The member's DAVE session (it has one once the voice server set up the group)."""
        if self.dave is None:
            raise RuntimeError(f"member {self.user_id} has no DAVE session yet")
        return self.dave

    def _new_dave_session(self, version: int, channel_id: int, external_sender: bytes) -> bytes:
        """(Re)start this member's DAVE client for a new group; returns its key package."""
        if self.dave is None:
            self.dave = make_member_dave(self.dave_impl, self.user_id, lambda: self.ssrc)
        self.in_group = False
        return self.dave.new_group(version, channel_id, external_sender)

    @property
    def leaf_index(self) -> int | None:
        """This member's leaf in the bot's MLS group, as the server follows it."""
        return self.server.dave.leaves.get(self.user_id) if self.in_group else None

    # --- speaking --------------------------------------------------------------------------------------------------

    async def speak(
        self, audio: np.ndarray | str | Path, at: float | None = None, *, rate: int = 48_000
    ) -> SpeakReport:
        """Stream ``audio`` to the bot in real time, one 20 ms Opus packet per frame; returns when the last is sent.

        ``audio``: PCM (mono or (n, channels), int16 or float in [-1, 1]) at ``rate``, or a WAV path.
        ``at``: monotonic time to start (default now). Ends with 5 Opus silence frames, as Discord clients do.
        """
        if isinstance(audio, (str, Path)):
            pcm = audio_files.load_discord_pcm(audio)
        else:
            pcm = audio_files.to_discord_pcm(audio, rate)
        pcm_frames = audio_files.frames(pcm)
        async with self._speak_lock:
            if not self.present:
                raise RuntimeError(f"{self} is not in the channel")
            loop = asyncio.get_running_loop()
            start_mono = time.monotonic() if at is None else at
            start = loop.time() + (start_mono - time.monotonic())
            report = SpeakReport(start=start_mono)
            await self._sleep_until(loop, start)
            announce_after = self.server.speaking_after_packets  # 0: op 5 before the first packet
            announced = announce_after == 0
            if announced:
                await self.server.gateway.announce_speaking(self, True)
            held: bytes | None = None
            total = len(pcm_frames) + 5

            def send(packet: bytes) -> None:
                self.server.media.send_to_bot(packet)
                report.sent += 1
                if self.knobs.rtcp_every and report.sent % self.knobs.rtcp_every == 0:
                    self.server.media.send_rtcp_receiver_report(self.ssrc)
                    report.rtcp += 1

            for i in range(total):
                if i < len(pcm_frames):  # encode ahead, send on time
                    payload = await loop.run_in_executor(
                        _OPUS_POOL, self._encoder.encode, pcm_frames[i], audio_files.FRAME_SAMPLES
                    )
                else:
                    payload = OPUS_SILENCE
                await self._sleep_until(loop, start + i * FRAME_SECONDS)
                if not self.present:
                    break
                packet = self._build_packet(payload, report, marker=(i == 0))
                report.frames += 1
                if packet is None:
                    continue
                if self._rng.random() < self.knobs.loss:
                    report.dropped += 1
                    continue
                if held is None and i < total - 1 and self._rng.random() < self.knobs.reorder:
                    held = packet
                    report.reordered += 1
                    continue
                send(packet)
                if held is not None:
                    send(held)
                    held = None
                if not announced and report.sent >= announce_after:
                    announced = True
                    await self.server.gateway.announce_speaking(self, True)
            if held is not None:
                send(held)
            await self.server.gateway.announce_speaking(self, False)
            return report

    @staticmethod
    async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        delay = deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _build_packet(self, opus_frame: bytes, report: SpeakReport, *, marker: bool) -> bytes | None:
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + audio_files.FRAME_SAMPLES) & 0xFFFFFFFF
        frame = opus_frame
        if opus_frame == OPUS_SILENCE:
            report.silence += 1
        elif self.server.dave_active:
            if self.dave is not None and self.in_group and self.dave.ready:
                frame = self.dave.encrypt_opus(opus_frame)
                report.dave_encrypted += 1
            else:  # a real client would not send plaintext into an E2EE call; count it, send it (transition window)
                report.plain += 1
        else:
            report.plain += 1
        extension = None
        if self._rng.random() < self.knobs.extension:
            level = self._rng.randrange(0, 128)
            extension = (
                bytes((0x10, 0x80 | level, 0, 0))
                if self._rng.random() < 0.5
                else bytes((0x10, 0x80 | level, 0x21, 0x00, 0x01, 0, 0, 0))
            )
        padding = self.knobs.padding_bytes if self._rng.random() < self.knobs.padding else 0
        return self.server.media.encrypt_for_bot(
            sequence=self._seq,
            timestamp=self._timestamp,
            ssrc=self.ssrc,
            payload=frame,
            extension=extension,
            padding=padding,
            marker=marker,
        )

    # --- hearing the bot -----------------------------------------------------------------------------------------------

    def _on_bot_frame(self, from_user_id: int, ssrc: int, frame: bytes, arrival: float) -> None:
        """A transport-decrypted media frame the bot sent (called by the server on the event loop)."""
        self.stats["received"] += 1
        heard = self._heard.setdefault(from_user_id, _Heard())
        if frame.endswith(DAVE_MAGIC) and frame != OPUS_SILENCE:
            if self.dave is None or not self.in_group:
                self.stats["dave_failed"] += 1
                return
            try:
                frame = self.dave.decrypt(from_user_id, frame)
            except Exception as exc:  # NoDecryptorForUser, auth failures: a lost packet for this listener
                self.stats["dave_failed"] += 1
                log.debug("%s: DAVE decrypt failed: %s", self, exc)
                return
            self.stats["dave_decrypted"] += 1
        else:
            self.stats["plain"] += 1
        if heard.decoder is None or heard.ssrc != ssrc:
            heard.decoder, heard.ssrc = opus.Decoder(), ssrc
        try:
            pcm_bytes = heard.decoder.decode(frame, fec=False)
        except opus.OpusError as exc:
            self.stats["decode_failed"] += 1
            log.debug("%s: Opus decode failed: %s", self, exc)
            return
        pcm = np.frombuffer(pcm_bytes, dtype=np.int16).reshape(-1, 2)
        heard.packets += 1
        heard.chunks.append(pcm)
        heard.samples += pcm.shape[0]
        limit = int(self.MAX_HEARD_SECONDS * audio_files.DISCORD_RATE)
        while heard.samples > limit and len(heard.chunks) > 1:
            heard.samples -= heard.chunks.pop(0).shape[0]
        if pcm.size and int(np.abs(pcm).max()) >= self.VOICED_PEAK:
            if arrival - heard.last_voiced > self.UTTERANCE_GAP:
                heard.utterance_starts.append(arrival)
            heard.last_voiced = arrival
        self._heard_event.set()

    def _source(self, from_user_id: int | None) -> int:
        if from_user_id is not None:
            return from_user_id
        if self.server.bot_user_id is None:
            raise RuntimeError("no bot has connected yet; pass from_user_id")
        return self.server.bot_user_id

    def received_pcm(self, from_user_id: int | None = None, *, dtype: str = "int16") -> np.ndarray:
        """Everything heard from ``from_user_id`` (default: the bot), decoded: (n, 2) at 48 kHz, int16 or float32."""
        heard = self._heard.get(self._source(from_user_id))
        pcm = np.concatenate(heard.chunks) if heard and heard.chunks else np.zeros((0, 2), dtype=np.int16)
        if dtype == "float32":
            return pcm.astype(np.float32) / 32768.0
        return pcm

    def utterance_starts(self, from_user_id: int | None = None) -> list[float]:
        """Monotonic arrival times of the first voiced packet of each utterance heard from the bot."""
        heard = self._heard.get(self._source(from_user_id))
        return list(heard.utterance_starts) if heard else []

    def clear_received(self) -> None:
        self._heard.clear()

    async def wait_for_audio(
        self, seconds: float, *, from_user_id: int | None = None, timeout: float = 30.0
    ) -> np.ndarray:
        """Wait until at least ``seconds`` of audio were heard from the bot; returns `received_pcm()`."""
        need = int(seconds * audio_files.DISCORD_RATE)

        def enough() -> bool:
            heard = self._heard.get(self._source(from_user_id))
            return heard is not None and heard.samples >= need

        async def _wait() -> None:
            while not enough():
                self._heard_event.clear()
                await self._heard_event.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.received_pcm(from_user_id)
