"""One call's memory: reads the session's room history as it grows, and queues what to remember.

Every `POLL_S` (and once more at the end) the recorder looks at the room's lines (human and bot,
with user ids; a member's line may grow when their next final is merged into it). Each new member
words go through fact extraction, and the facts are queued as writes at once. The call's lines are
also kept (bounded) for the summary: every `MEMORY_SUMMARY_INTERVAL_S` of a long call, while nobody
speaks and the bot is silent, the lines so far are summarized in the background; at the end of the
call the rest is. Nothing here runs on a reply's path: polling is a few dictionary look-ups on the
event loop, summaries run in a thread under the scheduler's background slot, writes are queued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from discord.ext import tasks

from runtime import executors
from memory.extract import Fact, extract_facts
from memory.store import name_patterns
from memory.summarize import Line, SummaryPreempted, summarize_member

if TYPE_CHECKING:
    from memory.service import MemoryService

log = logging.getLogger(__name__)

POLL_S = 1.0
MAX_CALL_LINES = 400
MIN_MEMBER_LINES_FOR_SUMMARY = 1
PREEMPTED_RETRY_S = 3.0
MAX_SUMMARY_ATTEMPTS = 20


@dataclass
class _SummaryJob:
    lines: list[Line]
    members: dict[int, str]  # user id -> name of the members it summarizes
    part: int
    cancel: threading.Event = field(default_factory=threading.Event)  # stops its model at the next token


class CallRecorder:
    def __init__(
        self,
        service: "MemoryService",
        guild_id: int,
        session: Any,
        *,
        llm: Any = None,
        scheduler: Any = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.service = service
        self.guild_id = guild_id
        self.session = session
        self.llm = llm
        self.scheduler = scheduler
        self.poll_s = poll_s
        self.call_id = uuid.uuid4().hex[:12]
        self.lines: deque[Line] = deque(maxlen=MAX_CALL_LINES)
        self.facts_found = 0
        self.summaries_written = 0
        self._texts: dict[int, str] = {}  # room line seq -> text seen so far
        self._part = 0
        self._segment_started = time.monotonic()
        self._ticker: tasks.Loop | None = None
        self._summary_jobs: dict[asyncio.Task, _SummaryJob] = {}  # running summaries

    def start(self) -> None:
        self._ticker = tasks.loop(seconds=self.poll_s)(self._tick)
        self._ticker.start()

    async def _tick(self) -> None:
        try:
            self.poll()
            self._maybe_summarize_segment()
        except Exception:  # memory must never take the session down
            log.exception("guild %s: memory recorder step failed", self.guild_id)

    # -- reading the room ---------------------------------------------------------------------------
    def poll(self) -> None:
        room = self.session.room
        if not self.service.remembers(self.guild_id):
            self.lines.clear()
            self._texts = {line.seq: line.text for line in room.history}
            return
        history = list(room.history)
        for line in history:
            old = self._texts.get(line.seq)
            if old == line.text:
                continue
            self._texts[line.seq] = line.text
            new = line.text[len(old) :].strip() if old and line.text.startswith(old) else line.text.strip()
            if not new:
                continue
            if line.is_bot:
                self.lines.append(Line(line.name, new, None))
                continue
            if line.user_id is None or self.service.is_opted_out(self.guild_id, line.user_id):
                continue
            self.lines.append(Line(line.name, new, line.user_id))
            facts = [
                Fact(f.key, self.service.scrub(self.guild_id, f.text, self._names_here())) for f in extract_facts(new)
            ]
            if facts:
                self.facts_found += len(facts)
                self.service.queue_facts(self.guild_id, line.user_id, facts)
        if history:
            oldest = history[0].seq
            self._texts = {seq: text for seq, text in self._texts.items() if seq >= oldest}

    def _names_here(self) -> dict[int, str]:
        return {m.user_id: m.name for m in self.session.room.members.values()}

    def forget_member(self, user_id: int) -> None:
        """Drop the member's lines from the call so far (they opted out or asked to be forgotten). A summary
        under way that read their lines is cancelled (its model stopped at the next token, its result never
        queued) and made again from the others' lines only (so no summary of anyone, written later, carries
        what they said)."""
        self.lines = deque((ln for ln in self.lines if ln.user_id != user_id), maxlen=MAX_CALL_LINES)
        for task, job in list(self._summary_jobs.items()):
            if task.done() or not any(ln.user_id == user_id for ln in job.lines):
                continue
            job.cancel.set()
            task.cancel()
            rest = [ln for ln in job.lines if ln.user_id != user_id]
            others = {uid: name for uid, name in job.members.items() if uid != user_id}
            if others:
                self._spawn_summary(rest, others, job.part)

    def drop_everything(self) -> None:
        """The guild's rows are about to be deleted (the bot was removed from it): the call's lines dropped, its
        summaries under way cancelled (their models stopped at the next token, nothing made again or queued)
        and the recorder stopped."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.lines.clear()
        for task, job in list(self._summary_jobs.items()):
            job.cancel.set()
            task.cancel()

    @property
    def summarizing(self) -> bool:
        """Whether a summary of this call is still under way."""
        return any(not task.done() for task in self._summary_jobs)

    # -- summaries ----------------------------------------------------------------------------------
    def _maybe_summarize_segment(self) -> None:
        if time.monotonic() - self._segment_started < self.service.summary_interval_s:
            return
        room = self.session.room
        if room.turn is not None or room.speaking_members():
            return  # a quiet moment is better: nothing competes with a reply
        self._summarize_segment()

    def _summarize_segment(self) -> asyncio.Task | None:
        lines = list(self.lines)
        self.lines.clear()
        self._segment_started = time.monotonic()
        members = {}
        for line in lines:
            if line.user_id is not None:
                members[line.user_id] = line.speaker
        if not members:
            return None
        part = self._part
        self._part += 1
        return self._spawn_summary(lines, members, part)

    def _spawn_summary(self, lines: list[Line], members: dict[int, str], part: int) -> asyncio.Task:
        job = _SummaryJob(lines, members, part)
        task = asyncio.create_task(self._summarize(job), name=f"memory-summary-{self.guild_id}")
        self._summary_jobs[task] = job
        task.add_done_callback(lambda t: self._summary_jobs.pop(t, None))
        self.service.track(task)
        return task

    async def _summarize(self, job: _SummaryJob) -> None:
        bot_name = getattr(getattr(self.session, "persona", None), "name", "the bot")
        for user_id, name in job.members.items():
            if self.service.is_opted_out(self.guild_id, user_id) or not self.service.remembers(self.guild_id):
                continue
            mine = [ln.text for ln in job.lines if ln.user_id == user_id]
            if len(mine) < MIN_MEMBER_LINES_FOR_SUMMARY:
                continue
            summary = await self._summary_of(name, job.lines, mine, bot_name, job.cancel)
            if summary and not job.cancel.is_set():
                self.summaries_written += 1
                self.service.queue_summary(
                    self.guild_id,
                    user_id,
                    f"call:{self.call_id}:{job.part}",
                    self.service.scrub(self.guild_id, summary, self._names_here()),
                    heard=job.members,
                )

    async def _summary_of(
        self, name: str, lines: list[Line], mine: list[str], bot_name: str, cancel: threading.Event
    ) -> str | None:
        for _ in range(MAX_SUMMARY_ATTEMPTS):
            try:
                return await executors.run("memory", self._summarize_blocking, name, lines, mine, bot_name, cancel)
            except SummaryPreempted:
                await asyncio.sleep(PREEMPTED_RETRY_S)  # a reply needed the model; try again when it is quiet
            except Exception as exc:
                log.warning(
                    "guild %s: call summary failed (%s: %s); keeping the member's own lines",
                    self.guild_id,
                    type(exc).__name__,
                    exc,
                )
                break
        return summarize_member("extractive", name, lines, mine)

    def _summarize_blocking(
        self, name: str, lines: list[Line], mine: list[str], bot_name: str, cancel: threading.Event
    ) -> str | None:
        llm = (
            self.llm() if callable(self.llm) and not hasattr(self.llm, "stream") else self.llm
        )  # a provider loads it here
        return summarize_member(
            self.service.summary_method,
            name,
            lines,
            mine,
            llm=llm,
            scheduler=self.scheduler,
            bot_name=bot_name,
            owner=f"memory-summary-{self.guild_id}",
            cancel=cancel,
        )

    async def finish(self) -> None:
        """End of the call: read the last lines and summarize the rest (in the background)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        try:
            self.poll()
        except Exception:
            log.exception("guild %s: memory recorder's last read failed", self.guild_id)
        self._summarize_segment()


def scrub_names(text: str, names: list[str]) -> str:
    """`text` with the spoken forms of `names` replaced by "someone" (see `memory.store.name_patterns`)."""
    for pattern in name_patterns(names):
        text = pattern.sub("someone", text)
    return text
