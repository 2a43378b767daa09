"""Facts a member tells about themselves, found by rules in their transcribed lines.

The embedded LLM (SmolLM2-135M) cannot be trusted to extract facts (it invents and mixes up
speakers), so extraction is a set of patterns for what people say about themselves: what to call
them ("my name is", "call me", "I go by"), likes and dislikes, favourites, the people and pets in
their life ("my sister Maya…", "I have a dog named…"), where they live and work, what they are
learning, and plans ("I'm going to…", "next week I…"). Each fact is a predicate without its subject
("likes jazz", "sister is called Maya", "is going to Lisbon next week"), in the third person, so the
row never needs the member's (changeable) display name. Questions, wishes ("I'd like…") and
hypotheticals ("if I…") are not facts. `benchmarks/memory_bench.py` measures precision and recall on
a labelled set of lines written apart from these rules.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_OBJECT_WORDS = 12  # the end of a long clause is usually not part of the fact
MIN_LINE_WORDS = 3

RELATIONS = (
    "sister",
    "brother",
    "mom",
    "mother",
    "mum",
    "dad",
    "father",
    "wife",
    "husband",
    "partner",
    "girlfriend",
    "boyfriend",
    "son",
    "daughter",
    "kid",
    "kids",
    "children",
    "friend",
    "best friend",
    "roommate",
    "grandma",
    "grandmother",
    "grandpa",
    "grandfather",
    "aunt",
    "uncle",
    "cousin",
    "niece",
    "nephew",
    "boss",
    "dog",
    "cat",
    "puppy",
    "kitten",
    "parents",
    "family",
    "fiance",
    "fiancee",
    "twin",
    "neighbor",
    "neighbour",
)
_REL = "|".join(sorted((re.escape(r) for r in RELATIONS), key=len, reverse=True))

_SWAP = {
    "i": "they",
    "i'm": "they're",
    "im": "they're",
    "i've": "they've",
    "i'll": "they'll",
    "i'd": "they'd",
    "me": "them",
    "my": "their",
    "mine": "theirs",
    "myself": "themselves",
    "am": "are",
    "was": "was",
}
_QUESTION_START = re.compile(
    r"^(what|who|where|when|why|how|which|do|does|did|can|could|would|should|is|are|will|"
    r"have you|has|shall|may)\b",
    re.I,
)
_SKIP = re.compile(
    r"\b(if i|i'd like|i would like|i wish|do you|did you|are you|would you|you like|"
    r"maybe i|i guess i|i wonder)\b",
    re.I,
)
_TIME = (
    r"(?:tomorrow|tonight|today|this (?:weekend|week|month|year|summer|winter|spring|fall|autumn|evening)|"
    r"next (?:week|month|year|weekend|summer|winter|spring|fall|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)|on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|soon|later this \w+)"
)


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing a member said about themselves. `key` names its slot: a later fact with the same key
    replaces it (a new name replaces the old one); open-ended facts get a key of their own."""

    key: str
    text: str


def _swap_person(text: str) -> str:
    out = []
    for word in text.split():
        bare = word.lower().strip(".,!?;:")
        if bare in _SWAP:
            tail = word[len(word.rstrip(".,!?;:")) :]
            out.append(_SWAP[bare] + tail)
        else:
            out.append(word)
    return " ".join(out)


def _clip_object(text: str) -> str:
    text = re.split(
        r"\s*(?:[.;!?]|,\s*(?:but|and|so|because|it|it's|he|she|they|we|i|i'm|that|which|though)\b|"
        r"\s+but\s+|\s+because\s+|\s+so\s+)",
        text,
        maxsplit=1,
        flags=re.I,
    )[0]
    words = text.split()[:MAX_OBJECT_WORDS]
    return " ".join(words).strip(" ,")


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return hashlib.sha1(" ".join(words).encode()).hexdigest()[:10]


def _name(raw: str) -> str | None:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'\-]*", raw)][:2]
    if not words or words[0].lower() in {"a", "an", "the", "not", "just", "so", "really", "very", "going", "from"}:
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words[: 1 if len(words) == 1 or words[1].islower() else 2])


def _clauses(line: str) -> list[str]:
    parts = re.split(
        r"(?<=[.!?])\s+|\s*;\s*|,?\s+(?:and also|also|and then|and|but)\s+(?=(?:i|i'm|i've|my|me)\b)", line, flags=re.I
    )
    return [p.strip(" ,") for p in parts if p and p.strip(" ,")]


_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(?:my name is|my name's|call me|i go by|i'm called|people call me|everyone calls me)\s+(?P<x>.+)", re.I
        ),
        "name",
    ),
    (
        re.compile(
            r"\bmy (?P<rel>" + _REL + r")(?:'s name is| is called| is named|,? called|,? named)\s+(?P<x>.+)", re.I
        ),
        "rel_name",
    ),
    (re.compile(r"\bi have (?:a|an|two|three|four|\d+) (?P<rel>" + _REL + r")s?\b(?P<x>.*)", re.I), "has"),
    (re.compile(r"\bmy (?P<rel>" + _REL + r")\s+(?P<x>.+)", re.I), "rel"),
    (re.compile(r"\bmy (?:favou?rite) (?P<what>[a-z ]{2,30}?) (?:is|are|was)\s+(?P<x>.+)", re.I), "favorite"),
    (
        re.compile(
            r"\bi (?:really |just |absolutely |totally )?(?P<verb>like|love|enjoy|adore|am into|'m into|'m a big fan of|am a big fan of)\s+(?P<x>.+)",
            re.I,
        ),
        "likes",
    ),
    (re.compile(r"\bi(?:'m| am) (?P<verb>into|a fan of|obsessed with|crazy about)\s+(?P<x>.+)", re.I), "likes"),
    (
        re.compile(
            r"\bi (?:really )?(?P<verb>hate|dislike|can't stand|cannot stand|don't like|do not like|don't enjoy)\s+(?P<x>.+)",
            re.I,
        ),
        "dislikes",
    ),
    (re.compile(r"\bi (?:live|grew up|was born) in\s+(?P<x>.+)", re.I), "home"),
    (re.compile(r"\bi(?:'m| am) from\s+(?P<x>.+)", re.I), "from"),
    (
        re.compile(r"\b(?:i work (?:as|at|in|for)|my job is|i(?:'m| am) working (?:as|at)|i teach)\s+(?P<x>.+)", re.I),
        "job",
    ),
    (
        re.compile(
            r"\bi(?:'m| am) (?:learning|studying|practicing|practising|training for|reading|writing|building|making)\s+(?P<x>.+)",
            re.I,
        ),
        "doing",
    ),
    (re.compile(r"\bmy birthday is\s+(?P<x>.+)", re.I), "birthday"),
    (
        re.compile(
            r"\b(?:i(?:'m| am) (?:going to|gonna|planning to|planning on|about to|flying to|moving to|heading to|"
            r"visiting|starting|leaving for)|i will|i'll|i plan to|i have to|we(?:'re| are) going to)\s+(?P<x>.+)",
            re.I,
        ),
        "plan",
    ),
    (re.compile(r"\b" + _TIME + r",? i(?:'m| am)? (?P<x>.+)", re.I), "plan_time"),
]


def extract_facts(line: str) -> list[Fact]:
    """The facts in one transcribed line of a member (often none)."""
    facts: list[Fact] = []
    seen: set[str] = set()
    for clause in _clauses(line):
        if clause.endswith("?") or _QUESTION_START.match(clause) or _SKIP.search(clause):
            continue
        if len(clause.split()) < MIN_LINE_WORDS and not re.match(r"(?i)call me\b", clause):
            continue
        fact = _fact_of(clause)
        if fact is not None and fact.key not in seen:
            seen.add(fact.key)
            facts.append(fact)
    return facts


def _fact_of(clause: str) -> Fact | None:
    for pattern, kind in _PATTERNS:
        match = pattern.search(clause)
        if match is None:
            continue
        fact = _build(kind, match)
        if fact is not None:
            return fact
    return None


def _build(kind: str, m: re.Match[str]) -> Fact | None:
    x = _clip_object(m.group("x")) if "x" in m.groupdict() and m.group("x") is not None else ""
    if kind == "name":
        name = _name(x)
        return Fact("name", f"wants to be called {name}") if name else None
    if kind == "rel_name":
        name = _name(x)
        rel = m.group("rel").lower()
        return Fact(f"rel:{rel}:name", f"{rel} is called {name}") if name else None
    if kind == "has":
        rel = m.group("rel").lower()
        rest = _swap_person(x)
        rest = re.sub(r"^(?:called|named)\s+", "called ", rest)
        text = f"has a {rel}" + (f" {rest}" if rest else "")
        return Fact(f"has:{rel}:{_slug(rest)}", text)
    if kind == "rel":
        rel = m.group("rel").lower()
        rest = _swap_person(x)
        if len(rest.split()) < 2 or re.match(r"(?i)^(and|or|is|was|too|also)$", rest):
            return None
        name_first = re.match(r"^([A-Z][a-z]+)\b\s*(.*)$", x)
        if name_first and name_first.group(1).lower() not in {"is", "was", "and", "just", "lives", "works"}:
            name = name_first.group(1)
            rest2 = _swap_person(name_first.group(2))
            return Fact(f"rel:{rel}:{_slug(rest)}", f"{rel} {name}" + (f" {rest2}" if rest2 else ""))
        return Fact(f"rel:{rel}:{_slug(rest)}", f"{rel} {rest}")
    if kind == "favorite":
        what = " ".join(m.group("what").split()).lower()
        return Fact(f"favorite:{what}", f"favorite {what} is {_swap_person(x)}") if x else None
    if kind == "likes":
        if not x or x.lower().startswith(("it", "that", "this", "to think", "you")):
            return None
        obj = _swap_person(x)
        verb = m.group("verb").lower().replace("'m ", "").replace("am ", "")
        verb = {
            "like": "likes",
            "love": "loves",
            "enjoy": "enjoys",
            "adore": "adores",
            "into": "is into",
            "a big fan of": "is a big fan of",
            "a fan of": "is a fan of",
            "obsessed with": "is obsessed with",
            "crazy about": "is crazy about",
        }.get(verb, "likes")
        return Fact(f"likes:{_slug(obj)}", f"{verb} {obj}")
    if kind == "dislikes":
        if not x or x.lower().startswith(("it", "that", "this", "you")):
            return None
        obj = _swap_person(x)
        return Fact(f"likes:{_slug(obj)}", f"doesn't like {obj}")
    if kind in ("home", "from"):
        if not x:
            return None
        return Fact("home", f"lives in {_swap_person(x)}" if kind == "home" else f"is from {_swap_person(x)}")
    if kind == "job":
        return (
            Fact(
                "job",
                f"works {m.group(0).split()[2] if m.group(0).lower().startswith('i work') else 'as'} {_swap_person(x)}",
            )
            if x
            else None
        )
    if kind == "doing":
        verb = re.search(
            r"(learning|studying|practicing|practising|training for|reading|writing|building|making)", m.group(0), re.I
        )
        obj = _swap_person(x)
        if not x or obj.lower() in {"it", "that", "this"}:
            return None
        return Fact(f"doing:{_slug(obj)}", f"is {verb.group(1).lower() if verb else 'doing'} {obj}")
    if kind == "birthday":
        return Fact("birthday", f"birthday is {x}") if x else None
    if kind in ("plan", "plan_time"):
        obj = _swap_person(x)
        if len(obj.split()) < 2 or obj.lower().startswith(("be ", "say ", "tell ", "ask ", "think ", "try ")):
            return None
        lead = re.match(
            r"(?i).*?\b(going to|gonna|planning to|planning on|about to|flying to|moving to|heading to|"
            r"visiting|starting|leaving for|will|'ll|plan to|have to)\b",
            m.group(0),
        )
        verb = lead.group(1).lower() if lead else ""
        verb = {"gonna": "going to", "'ll": "will", "plan to": "planning to"}.get(verb, verb)
        when = re.search(_TIME, m.group(0), re.I)
        text = (
            f"is {verb} {obj}"
            if verb and verb not in ("will", "have to")
            else f"{'will' if verb != 'have to' else 'has to'} {obj}"
        )
        if kind == "plan_time":
            text = f"{when.group(0).lower() if when else ''}: {obj}".strip(": ")
        elif when is not None and when.group(0).lower() not in text.lower():
            text = f"{text} ({when.group(0).lower()})"
        return Fact(f"plan:{_slug(obj)}", text)
    return None
