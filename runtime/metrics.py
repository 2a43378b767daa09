"""Prometheus metrics per guild and a health check, served over HTTP (off by default).

``CHORUS_METRICS_PORT=9108`` turns it on: ``GET /metrics`` (Prometheus text format) and ``GET /healthz``
(JSON; 200 when the bot is connected to Discord, 503 otherwise) on ``CHORUS_METRICS_HOST`` (127.0.0.1).

What is measured:

* ``chorus_turn_stage_seconds{guild,stage}``: each stage of a bot turn, from the previous stage (speech end ->
  VAD end -> final transcript -> request -> first token -> first fragment -> first audio -> first packet), and
  ``chorus_turn_latency_seconds{guild}`` end of speech -> first packet; ``chorus_turns_total{guild,outcome}``.
  The voice session reports them through `GuildMetrics.observe_turn` (the recorder API it is handed).
* ``chorus_receive_{received,decoded}_total{guild}`` and ``chorus_receive_dropped_total{guild,reason}``: every
  received voice packet by outcome, read from the session's `VoiceReceiver` counters at scrape time.
* ``chorus_queue_depth{guild,queue}``: the receive worker's queue, and any queue a session registers.
* ``chorus_model_seconds{model}`` / ``chorus_model_wait_seconds{model}``: STT batches, LLM and TTS work slots
  (the models are shared by every guild of the process).
* ``chorus_shed_total{guild,queue,reason}``: work a bounded queue dropped under load (`runtime.shedding.ShedLog`).
* ``chorus_stage_wait_seconds{guild,stage}`` / ``chorus_stage_compute_seconds{guild,stage}``: per stage of a turn
  (`runtime.stage_times`: STT, end of turn, LLM first token, TTS first audio; prefills as they run), the time it
  waited for a model (its slot, or the model another guild's work held) and the time it computed.
* ``chorus_admission_total{guild,reason}``: replies that waited too long for the model (`brain.admission`): a
  holding line spoken, kept short, dropped because the question had grown old.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime.stage_times import admission_reasons, stage_waits

log = logging.getLogger(__name__)

TURN_STAGES = (
    "speech_end",
    "vad_end",
    "final",
    "request",
    "first_token",
    "first_fragment",
    "first_audio",
    "first_packet",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_active: "Metrics | None" = None  # the process's metrics when enabled (model code reports to it)


def record_model_time(model: str, seconds: float, waited: float | None = None) -> None:
    """Report one unit of model work (an STT batch, an LLM or TTS work slot). A no-op while metrics are off."""
    metrics = _active
    if metrics is not None:
        metrics.model_seconds.labels(model).observe(seconds)
        if waited is not None:
            metrics.model_wait_seconds.labels(model).observe(waited)


def record_stage_time(stage: str, guild: str, waited: float, computed: float) -> None:
    """Report one stage's wait for a model and its compute (a prefill as it ends). A no-op while metrics are off."""
    metrics = _active
    if metrics is not None:
        metrics.stage_wait_seconds.labels(guild, stage).observe(max(0.0, waited))
        metrics.stage_compute_seconds.labels(guild, stage).observe(max(0.0, computed))


def record_shed(guild: str, queue: str, reason: str, n: int = 1) -> None:
    """Report `n` items a queue dropped (`runtime.shedding.ShedLog` calls it). A no-op while metrics are off."""
    metrics = _active
    if metrics is not None:
        metrics.shed.labels(guild, queue, reason).inc(n)


class GuildMetrics:
    """The recorder one guild's voice session is handed."""

    def __init__(self, metrics: "Metrics", guild_id: int) -> None:
        self._m = metrics
        self.guild = str(guild_id)
        self._queues: dict[str, Callable[[], int]] = {}
        self._receiver: Any = None

    def observe_turn(self, times: Mapping[str, float], outcome: str) -> None:
        """One bot turn: ``times`` maps stage names (`TURN_STAGES`) to monotonic seconds, as a TurnTrace holds."""
        self._m.turns.labels(self.guild, outcome).inc()
        previous: float | None = None
        for stage in TURN_STAGES:
            t = times.get(stage)
            if t is None:
                continue
            if previous is not None and t >= previous:
                self._m.stage_seconds.labels(self.guild, stage).observe(t - previous)
            previous = t
        start = times.get("speech_end", times.get("vad_end"))
        end = times.get("first_packet", times.get("first_audio"))
        if start is not None and end is not None and end >= start:
            self._m.turn_seconds.labels(self.guild).observe(end - start)
        for stage, (waited, computed) in stage_waits(times).items():
            self._m.stage_wait_seconds.labels(self.guild, stage).observe(waited)
            self._m.stage_compute_seconds.labels(self.guild, stage).observe(computed)
        for reason in admission_reasons(times):
            self._m.admission.labels(self.guild, reason).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._m.stage_seconds.labels(self.guild, stage).observe(seconds)

    def watch_queue(self, name: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as ``chorus_queue_depth{queue=name}`` at every scrape (must be cheap, thread-safe)."""
        self._queues[name] = depth

    def watch_receiver(self, receiver: Any) -> None:
        """Packet counters and queue depth of a `VoiceReceiver` (anything with ``stats.as_dict()``), or a
        callable returning the current one (a session may replace its receiver)."""
        self._receiver = receiver

    def _samples(self) -> tuple[dict[str, int], dict[str, int]]:
        stats: dict[str, int] = {}
        receiver = self._receiver
        if callable(receiver) and not hasattr(receiver, "stats"):
            receiver = receiver()
        if receiver is not None:
            try:
                stats = receiver.stats.as_dict()
            except Exception:
                log.debug("metrics: could not read the receiver's counters", exc_info=True)
        depths: dict[str, int] = {}
        if "pending" in stats:
            depths["receive"] = stats["pending"]
        for name, fn in list(self._queues.items()):
            try:
                depths[name] = int(fn())
            except Exception:
                log.debug("metrics: queue %s could not be read", name, exc_info=True)
        return stats, depths


class Metrics:
    """The process's metrics registry (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "chorus_turn_stage_seconds",
            "A stage of a bot turn, from the previous stage",
            ["guild", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "chorus_turn_latency_seconds",
            "End of a member's speech to the bot's first voice packet",
            ["guild"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter("chorus_turns", "Bot turns by outcome", ["guild", "outcome"], registry=self.registry)
        self.model_seconds = Histogram(
            "chorus_model_seconds",
            "Model work: an STT batch, an LLM or TTS work slot",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=self.registry,
        )
        self.model_wait_seconds = Histogram(
            "chorus_model_wait_seconds",
            "Waiting for a model work slot",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "chorus_shed",
            "Work a bounded queue dropped under load",
            ["guild", "queue", "reason"],
            registry=self.registry,
        )
        self.stage_wait_seconds = Histogram(
            "chorus_stage_wait_seconds",
            "A stage of a turn waiting for a model (its slot, or the model held by other work)",
            ["guild", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_compute_seconds = Histogram(
            "chorus_stage_compute_seconds",
            "A stage of a turn computing, once it had the model (to its first result)",
            ["guild", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.admission = Counter(
            "chorus_admission",
            "Replies that waited too long for the model, by what was done",
            ["guild", "reason"],
            registry=self.registry,
        )
        self._guilds: dict[int, GuildMetrics] = {}
        self._lock = threading.Lock()
        self.registry.register(_ScrapeTimeCollector(self))

    def activate(self) -> "Metrics":
        """Make this the process's metrics (what `record_model_time` reports to)."""
        global _active
        _active = self
        return self

    def deactivate(self) -> None:
        global _active
        if _active is self:
            _active = None

    def for_guild(self, guild_id: int) -> GuildMetrics:
        with self._lock:
            guild = self._guilds.get(guild_id)
            if guild is None:
                guild = self._guilds[guild_id] = GuildMetrics(self, guild_id)
            return guild

    def forget_guild(self, guild_id: int) -> None:
        """The guild's session ended: its live values (receive counters, queues) go; histograms stay."""
        with self._lock:
            self._guilds.pop(guild_id, None)

    def remove_guild(self, guild_id: int) -> int:
        """The bot left the guild: every series labelled with it goes, histograms and counters too (nothing about
        it is exported again). Returns the series removed."""
        self.forget_guild(guild_id)
        guild, removed = str(guild_id), 0
        for metric, labels in (
            (self.stage_seconds, ("guild", "stage")),
            (self.turn_seconds, ("guild",)),
            (self.turns, ("guild", "outcome")),
            (self.shed, ("guild", "queue", "reason")),
            (self.stage_wait_seconds, ("guild", "stage")),
            (self.stage_compute_seconds, ("guild", "stage")),
            (self.admission, ("guild", "reason")),
        ):
            series = {
                tuple(sample.labels[name] for name in labels)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("guild") == guild
            }
            for values in series:
                metric.remove(*values)
            removed += len(series)
        return removed

    def guilds(self) -> list[GuildMetrics]:
        with self._lock:
            return list(self._guilds.values())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTimeCollector(Collector):
    """Values read when Prometheus scrapes: receive counters and queue depths of live sessions."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Any]:
        received = CounterMetricFamily("chorus_receive_received", "Voice packets received", labels=["guild"])
        decoded = CounterMetricFamily("chorus_receive_decoded", "Voice packets decoded", labels=["guild"])
        dropped = CounterMetricFamily(
            "chorus_receive_dropped", "Voice packets dropped, by reason", labels=["guild", "reason"]
        )
        depth = GaugeMetricFamily("chorus_queue_depth", "Items waiting in a queue", labels=["guild", "queue"])
        sessions = GaugeMetricFamily("chorus_voice_sessions", "Guilds with a live voice session")
        guilds = self._metrics.guilds()
        sessions.add_metric([], len(guilds))
        for guild in guilds:
            stats, depths = guild._samples()
            if stats:
                received.add_metric([guild.guild], stats.get("received", 0))
                decoded.add_metric([guild.guild], stats.get("decoded", 0))
                for key, value in stats.items():
                    if key.startswith("dropped_"):
                        dropped.add_metric([guild.guild, key[len("dropped_") :]], value)
            for name, value in depths.items():
                depth.add_metric([guild.guild, name], value)
        return [received, decoded, dropped, depth, sessions]


class MetricsServer:
    """``/metrics`` and ``/healthz`` on aiohttp (which discord.py already brings)."""

    def __init__(self, metrics: Metrics, *, host: str, port: int, health: Callable[[], dict[str, Any]]) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._health = health
        self._runner: Any = None
        self.started = time.monotonic()

    async def start(self) -> "MetricsServer":
        """Listen; a port in use (or not allowed) raises `runtime.errors.StartupError` naming the setting."""
        from aiohttp import web

        from runtime.errors import port_in_use_error

        app = web.Application()
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=False)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise port_in_use_error("CHORUS_METRICS_PORT", self.host, self.port, exc) from None
        if self.port == 0:  # tests: the port the OS chose
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics_page(self, request: Any) -> Any:
        from aiohttp import web

        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        try:
            health = dict(self._health())
        except Exception as exc:  # a health check that breaks says so instead of 500 without a body
            log.exception("health check failed")
            health = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        health["uptime_s"] = round(time.monotonic() - self.started, 1)
        return web.Response(
            text=json.dumps(health), status=200 if health.get("ok") else 503, content_type="application/json"
        )
