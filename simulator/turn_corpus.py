"""The turn-taking corpus (`corpora/turns.toml`): group situations with the behaviour expected of the bot.

    corpus = load_corpus()                       # validated; a broken entry names its scenario and field
    [s.id for s in corpus.select(split="dev", family="takeover")]

Each scenario names the bot's persona, the members present (name = voice), and steps: one member's line each,
with when it is said (after the room went quiet, a gap after the previous line, or over the bot's voice) and
what the bot should do about it (speak, stay quiet, keep talking, yield). See the file's header for the fields.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.settings import PROJECT_ROOT
from simulator.voices import CastMember, MemberVoice

CORPUS_PATH = PROJECT_ROOT / "corpora" / "turns.toml"
EXPECTATIONS = ("speak", "quiet", "keep", "yield")
SPLITS = ("dev", "heldout")
FIRST_USER_ID = 301


class CorpusError(ValueError):
    """A corpus entry cannot be used; the message names the scenario and the field."""


@dataclass(frozen=True)
class Step:
    who: str
    parts: tuple[str, ...]  # one utterance, in parts separated by `pauses`
    pauses: tuple[float, ...]
    expect: str
    timing: str  # after | gap | over_bot
    delay: float  # seconds, meaning per `timing`
    clip: float | None = None  # keep only this many seconds of voice
    require: str | None = None  # "question": the bot's reply must ask one (else the line is said again)
    within: float | None = None  # speak: the reply must reach the members this soon after the last word

    @property
    def text(self) -> str:
        return " ".join(self.parts)


@dataclass(frozen=True)
class CorpusScenario:
    id: str
    family: str
    split: str
    persona: str
    members: tuple[CastMember, ...]
    steps: tuple[Step, ...]
    long_replies: bool = False
    watch_s: float = 5.0

    def member(self, name: str) -> CastMember:
        return next(m for m in self.members if m.name == name)


@dataclass
class Corpus:
    scenarios: list[CorpusScenario] = field(default_factory=list)
    path: Path = CORPUS_PATH
    voices: dict[str, MemberVoice] = field(default_factory=dict)  # the corpus's named voices ([voices])

    @property
    def families(self) -> list[str]:
        return sorted({s.family for s in self.scenarios})

    def select(
        self, *, split: str | None = None, family: str | None = None, ids: tuple[str, ...] | list[str] = ()
    ) -> list[CorpusScenario]:
        out = [
            s
            for s in self.scenarios
            if (split in (None, "all") or s.split == split)
            and (family is None or s.family == family)
            and (not ids or s.id in ids)
        ]
        missing = set(ids) - {s.id for s in self.scenarios}
        if missing:
            raise CorpusError(f"no scenario named {', '.join(sorted(missing))} in {self.path}")
        return out

    def get(self, scenario_id: str) -> CorpusScenario:
        return self.select(ids=[scenario_id])[0]


def load_corpus(path: Path = CORPUS_PATH) -> Corpus:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CorpusError(f"{path}: {exc}") from None
    voices = {name: _voice(name, spec) for name, spec in (data.get("voices") or {}).items()}
    corpus = Corpus(path=path, voices=voices)
    seen: set[str] = set()
    for raw in data.get("scenario") or []:
        scenario = _scenario(raw, voices)
        if scenario.id in seen:
            raise CorpusError(f"{path}: scenario {scenario.id!r} appears twice")
        seen.add(scenario.id)
        corpus.scenarios.append(scenario)
    return corpus


def _voice(name: str, spec: dict[str, Any]) -> MemberVoice:
    try:
        return MemberVoice(
            engine=spec["engine"],
            voice=spec.get("voice", "embedded"),
            speed=float(spec.get("speed", 1.0)),
            pitch=spec.get("pitch"),
            semitones=float(spec.get("semitones", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"voice {name!r}: {exc}") from None


def _scenario(raw: dict[str, Any], voices: dict[str, MemberVoice]) -> CorpusScenario:
    sid = str(raw.get("id") or "?")

    def fail(what: str) -> CorpusError:
        return CorpusError(f"scenario {sid!r}: {what}")

    members = []
    for i, entry in enumerate(raw.get("members") or []):
        name, _, voice = str(entry).partition("=")
        if voice not in voices:
            raise fail(f"member {entry!r}: unknown voice {voice!r} (known: {', '.join(sorted(voices))})")
        members.append(CastMember(FIRST_USER_ID + i, name.strip(), voices[voice]))
    if not members:
        raise fail("no members")
    names = {m.name for m in members}
    if raw.get("split") not in SPLITS:
        raise fail(f"split must be one of {SPLITS}")
    steps = []
    for i, s in enumerate(raw.get("steps") or []):
        if s.get("who") not in names:
            raise fail(f"step {i + 1}: who={s.get('who')!r} is not a member")
        parts = s.get("say")
        parts = (parts,) if isinstance(parts, str) else tuple(parts or ())
        pauses = tuple(float(p) for p in s.get("pauses", ()))
        if not parts or len(pauses) != len(parts) - 1:
            raise fail(f"step {i + 1}: `say` needs one more part than `pauses`")
        if s.get("expect") not in EXPECTATIONS:
            raise fail(f"step {i + 1}: expect must be one of {EXPECTATIONS}")
        timings = [k for k in ("after", "gap", "over_bot") if k in s]
        if len(timings) > 1:
            raise fail(f"step {i + 1}: give at most one of after / gap / over_bot")
        timing = timings[0] if timings else "after"
        if s["expect"] in ("keep", "yield") and timing != "over_bot":
            raise fail(f"step {i + 1}: keep/yield lines are said over the bot (over_bot = seconds)")
        steps.append(
            Step(
                who=s["who"],
                parts=parts,
                pauses=pauses,
                expect=s["expect"],
                timing=timing,
                delay=float(s.get(timing, 1.0)),
                clip=float(s["clip"]) if "clip" in s else None,
                require=s.get("require"),
                within=float(s["within"]) if "within" in s else None,
            )
        )
        if "within" in s and s["expect"] != "speak":
            raise fail(f"step {i + 1}: `within` is for speak steps")
    if not steps:
        raise fail("no steps")
    return CorpusScenario(
        id=sid,
        family=str(raw.get("family") or "?"),
        split=raw["split"],
        persona=str(raw.get("persona") or "Juniper"),
        members=tuple(members),
        steps=tuple(steps),
        long_replies=bool(raw.get("long_replies", False)),
        watch_s=float(raw.get("watch", 5.0)),
    )
