"""Who a line is spoken to: fuzzy name spotting (as Whisper spells names); its shape (a question, a backchannel)
is `conversation.line_shape`.

Whisper writes an unusual name the way it hears it: "Juniper" may come out as "Jennifer",
"Junipur" or "Juni per". A name is spotted when a word (or up to three words run together) is
close to it both in spelling (normalized Levenshtein similarity) and in sound (the full Soundex
code), or, for names of 6+ letters, very close in spelling alone. Short names (4 letters or fewer)
must match exactly, because any short word is a few edits from any other. Nicknames ("June") are not guessed: pass them as aliases.

Whisper also writes a name it does not know as English words ("You nipper" for "Juniper"): a word window
that SOUNDS like the name (espeak-ng phonemes, `conversation.phonetic`) matches too, closely anywhere
(`phonetic_threshold`), more loosely where it calls someone (`VOCATIVE_PHONETIC_THRESHOLD`, see
`vocative_positions`). Names of fewer than PHONETIC_MIN_PHONEMES sounds are not matched by sound.

Names are resolved against everyone present (`resolve_names`): a word is the name of whoever it matches
best, so with a member called Jennifer in the room "Jennifer, pass the salt" is for her, not for a bot
called Juniper that Whisper sometimes writes as "Jennifer"; a member's real name beats a bot's nickname
("Junie" the member over Juniper's alias "Junie", "Juni" too); only the bot's own name wins a tie.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator, Sequence

from conversation.mentions import REFERENCE_BEFORE, is_reference
from conversation.text_words import normalize, words
from conversation.vocative import set_off_spans, vocative_positions
from conversation.phonetic import phonemes_of, phonetic_similarity

VOCATIVE_SOUND_THRESHOLD = 0.45  # the looser sound match for a word calling someone (see `vocative_positions`)
PHONETIC_THRESHOLD = 0.87  # phoneme similarity that is the name anywhere ("you nipper" 0.93; "tricky" for Trixie 0.83)
VOCATIVE_PHONETIC_THRESHOLD = 0.78  # …and where it calls someone ("Genie per, …" 0.83; "You never, …" 0.70)
PHONETIC_MIN_PHONEMES = 5  # shorter names are a few sounds from many words
WEAK_ALIAS_LETTERS = 5  # an alias this short ("June", "Junie", "Cap") calls the bot only when set off by commas
TITLES = frozenset("dr mr mrs ms mx sir lady lord the mister miss prof captain capt".split())


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance between two strings (letters) or two word lists (words)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    """1 - edit distance / length of the longer string (1.0 = equal)."""
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


_SOUNDEX_CODES = {
    c: d
    for letters, d in (("bfpv", "1"), ("cgjkqsxz", "2"), ("dt", "3"), ("l", "4"), ("mn", "5"), ("r", "6"))
    for c in letters
}


@lru_cache(maxsize=4096)
def soundex(word: str, length: int = 4) -> str:
    """American Soundex (letter + 3 digits); `length=0`: the whole code, untruncated (for long
    run-together names, where 4 characters only describe the start). '' without letters."""
    letters = [c for c in word.lower() if "a" <= c <= "z"]
    if not letters:
        return ""
    first = letters[0]
    out = [first.upper()]
    last = _SOUNDEX_CODES.get(first, "")
    for c in letters[1:]:
        code = _SOUNDEX_CODES.get(c, "")
        if code and code != last:
            out.append(code)
        if c not in "hw":  # h and w do not separate equal codes; vowels do
            last = code
    return ("".join(out) + "000")[:4] if length == 4 else "".join(out)


@dataclass(frozen=True)
class NameMatcher:
    """Spots one name (with aliases) in transcripts.

    `spelling_threshold`: similarity that matches on spelling alone; `sound_threshold`: the lower
    similarity that matches when the Soundex keys agree too.
    """

    names: tuple[str, ...]
    spelling_threshold: float = 0.8
    sound_threshold: float = 0.55
    phonetic_threshold: float = PHONETIC_THRESHOLD
    spoken: tuple[tuple[str, ...], ...] = ()  # each form as the words it is said with ("captain", "hollis")

    @classmethod
    def for_name(cls, name: str, aliases: Iterable[str] = (), **kw: float) -> "NameMatcher":
        forms: list[str] = []
        spoken: list[tuple[str, ...]] = []
        for raw in (name, *aliases):
            form = "".join(words(raw))
            if form and form not in forms:
                forms.append(form)
                spoken.append(tuple(words(raw)))
            # a multi-word name is also called by its first word ("Captain Juniper Jones" → only if long)
        return cls(tuple(forms), spoken=tuple(spoken), **kw)

    def word_matches(self, candidate: str, said: tuple[str, ...] = ()) -> bool:
        return any(self._fuzzy(candidate, i, said) > 0 for i, name in enumerate(self.names))

    def _matches(self, candidate: str, name: str) -> bool:
        """Written like the name: the same, close in spelling, or close in spelling and in Soundex."""
        if candidate == name:
            return True
        if len(name) <= 4 or len(candidate) <= 3:
            return False
        sim = similarity(candidate, name)
        if sim >= self.spelling_threshold and len(name) >= 6:  # one typo in a 5-letter name is another word
            return True
        return sim >= self.sound_threshold and soundex(candidate, 0) == soundex(name, 0)

    def _fuzzy(self, candidate: str, i: int, said: tuple[str, ...]) -> float:
        """How closely `candidate` (`said`: the words it was joined from) is the name's form `i`, in spelling
        or in sound; 0 when neither matches."""
        name = self.names[i]
        spelled = similarity(candidate, name) if self._matches(candidate, name) else 0.0
        if (
            not said
            or i >= len(self.spoken)
            or len(name) <= 4  # "Trix" is "tricks": short ones only exactly
            or len(phonemes_of(self.spoken[i])) < PHONETIC_MIN_PHONEMES
        ):
            return spelled
        sound = phonetic_similarity(said, self.spoken[i])
        # the closer of the two: "Trexy" is Trixie by sound (0.96) more than Tracy by spelling (0.8)
        return max(spelled, sound if sound >= self.phonetic_threshold else 0.0)

    def matched_form(self, candidate: str, said: tuple[str, ...] = ()) -> str:
        """The form (name or alias) `candidate` matches best, '' for none."""
        best, form = 0.0, ""
        for i, name in enumerate(self.names):
            sim = 3.0 if candidate == name else self._fuzzy(candidate, i, said)
            if sim > best:
                best, form = sim, name
        return form

    def score(
        self, candidate: str, *, every_form_is_the_name: bool = False, said: tuple[str, ...] = ()
    ) -> tuple[float, bool]:
        """How surely `candidate` is this name, and whether through the name itself rather than an alias:
        2 the name itself, 1 an alias said exactly (2 when `every_form_is_the_name`: a person's first name
        is their name), the spelling (or sound) similarity for a fuzzy match, 0 none. `said`: the words
        `candidate` was joined from, for the match by sound."""
        best, primary = 0.0, False
        for i, name in enumerate(self.names):
            if candidate == name:
                return (2.0 if i == 0 or every_form_is_the_name else 1.0), i == 0 or every_form_is_the_name
            sim = self._fuzzy(candidate, i, said)
            if sim > best or (sim == best and sim > 0 and i == 0):
                best, primary = sim, i == 0 or every_form_is_the_name
        return best, primary

    def find(self, text: str) -> bool:
        """True if the name is said in `text` (one word, or up to three words run together)."""
        return _find_cached(self, text)

    def _find(self, text: str) -> bool:
        tokens = words(text)
        return any(self.word_matches(joined, tuple(tokens[i : j + 1])) for i, j, joined in name_windows(tokens))


def name_windows(tokens: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    """(first, last, joined) for every word and every run of up to three words run together: how a name
    may appear in a transcript ("Juni per" is "juniper")."""
    for i in range(len(tokens)):
        joined = ""
        for j in range(i, min(i + 3, len(tokens))):
            if j > i and (_single_letter(tokens[j]) or _single_letter(tokens[i])):
                break  # "a nice" is not "Alice": run-together pieces are syllables, not single letters
            joined += tokens[j]
            yield i, j, joined


def _single_letter(token: str) -> bool:
    """A letter alone ("a", "i"); a digit is a whole word said ("2 nipper": "two nipper", "you nipper")."""
    return len(token) < 2 and not token.isdigit()


@lru_cache(maxsize=8192)
def _find_cached(matcher: NameMatcher, text: str) -> bool:
    # The rules look at the same few lines on every tick: spot names once per (name, line).
    return matcher._find(text)


@lru_cache(maxsize=1024)
def _member_matcher(display: str) -> NameMatcher:
    # "Dr. Carol Smith", "alice_99", "xX_Gamer_Xx": each real word of the name is a way to call them.
    parts = [w for w in re.sub(r"[0-9]+", " ", " ".join(words(display))).split() if len(w) >= 3 and w not in TITLES]
    return NameMatcher.for_name(display, parts)


BOT = "bot"


@dataclass(frozen=True)
class NamesSaid:
    """Who `resolve_names` found named in a line. `bot_mentioned`: the bot's name said about it, not to it
    (`conversation.mentions`), which does not make the line the bot's."""

    bot: bool
    members: tuple[int, ...]
    bot_mentioned: bool = False


def resolve_names(text: str, bot: NameMatcher, members: Sequence[tuple[int, str]]) -> NamesSaid:
    """Whose names are said in `text`, each word given to the name it matches best among the bot's and
    the members' (`members`: (id, display name) of the people present, the speaker left out by the caller).
    A member's display name counts as itself (2) for every real word of it: "Junie" the member beats the
    bot's alias "Junie" (1), and "Jennifer" the member beats a fuzzy "Juniper"; the bot's own name wins a tie.
    The bot's name in the third person ("I told Juniper", "Bob, Juniper's idea…") is a mention, not a call."""
    return _resolve_cached(text, bot, tuple(members))


def members_called(text: str, bot: NameMatcher, members: Sequence[tuple[int, str]]) -> tuple[int, ...]:
    """The members `text` calls, not merely talks about: their name set off at the start or the end, or opening a
    question without its comma (`conversation.vocative.vocative_positions`), or ending the line without it ("What
    do you think Alice?", "Alice?"; not "…with Alice": `conversation.mentions.REFERENCE_BEFORE`). "What did Alice
    want to cook?" calls nobody: Alice is talked about (and the call Whisper lost may be the bot's)."""
    return _members_called_cached(text, bot, tuple(members))


@lru_cache(maxsize=1024)
def _members_called_cached(text: str, bot: NameMatcher, members: tuple[tuple[int, str], ...]) -> tuple[int, ...]:
    # The rules ask of the same few lines on every tick, up to three times per decision.
    tokens = words(text)
    called = " ".join(tokens[i] for i in sorted(vocative_positions(text)))
    found = list(resolve_names(called, bot, members).members) if called else []
    for size in range(1, min(3, len(tokens)) + 1):  # the last word(s), when they are a member's name
        said = tuple(tokens[-size:])
        whole = {uid for uid, name in members if _member_matcher(name).score("".join(said), said=said)[0] > 0}
        at_end = [uid for uid in resolve_names(" ".join(said), bot, members).members if uid in whole]  # bot wins ties
        if at_end:
            if size == len(tokens) or tokens[-size - 1] not in REFERENCE_BEFORE:
                found.extend(at_end)
            break
    return tuple(dict.fromkeys(found))


def _merged(spans: Sequence[tuple[int, int, bool, float]], first: int, last: int) -> tuple[int, int]:
    """The run of overlapping or touching name spans that (first, last) is part of."""
    changed = True
    while changed:
        changed = False
        for i, j, _weak, _score in spans:
            if i <= last + 1 and j >= first - 1 and (i < first or j > last):
                first, last, changed = min(first, i), max(last, j), True
    return first, last


def _led_by_title(said: tuple[str, ...], matcher: NameMatcher) -> bool:
    """`said` is a title and one more word, as the bot's name is ("Captain Harley" for "Captain Hollis"): the
    title, said exactly, is half the evidence, so the rest may be matched as loosely as a name calling someone
    ("Captain America" is still far from it)."""
    return any(len(form) == len(said) == 2 and form[0] in TITLES and said[0] == form[0] for form in matcher.spoken)


def _loosened(matcher: NameMatcher) -> NameMatcher:
    """The same matcher, as loose as a name calling someone may be matched."""
    return dataclasses.replace(
        matcher,
        sound_threshold=min(matcher.sound_threshold, VOCATIVE_SOUND_THRESHOLD),
        phonetic_threshold=min(matcher.phonetic_threshold, VOCATIVE_PHONETIC_THRESHOLD),
    )


@lru_cache(maxsize=4096)
def _resolve_cached(text: str, bot: NameMatcher, members: tuple[tuple[int, str], ...]) -> NamesSaid:
    owners = [(user_id, _member_matcher(display)) for user_id, display in members]
    tokens = words(text)
    calling = vocative_positions(text)
    loose_bot = _loosened(bot)
    loose_owners = [(uid, _loosened(m)) for uid, m in owners]
    bot_spans: list[tuple[int, int, bool, float]] = []
    called_member = False
    named: list[int] = []
    for i, j, joined in name_windows(tokens):
        said = tuple(tokens[i : j + 1])
        loose = all(k in calling for k in range(i, j + 1)) or _led_by_title(said, bot)
        # the bot's own name wins a tie; one of its aliases loses it to a person's name
        best_score, bot_primary = (loose_bot if loose else bot).score(joined, said=said)
        best_owner: int | None = None
        for user_id, matcher in loose_owners if loose else owners:
            score, _ = matcher.score(joined, every_form_is_the_name=True, said=said)
            if score > best_score or (score == best_score and score > 0 and best_owner is None and not bot_primary):
                best_score, best_owner = score, user_id
        if best_score <= 0:
            continue
        if best_owner is None:
            # a short alias or a title ("Cap", "Captain", "June", "Junie") may be a common word (or a bent
            # one: "June we"): it calls only when set off
            form = (loose_bot if loose else bot).matched_form(joined, said)
            weak = not bot_primary and (len(form) <= WEAK_ALIAS_LETTERS or form in TITLES)
            bot_spans.append((i, j, weak, best_score))
        else:
            called_member = called_member or loose
            if best_owner not in named:
                named.append(best_owner)
    raw = normalize(text).split()  # words() with the possessive 's still on
    set_off = set_off_spans(text)
    called_bot = False
    for i, j, _weak, _score in bot_spans:
        first, last = _merged(bot_spans, i, j)  # "Captain Holly's": the whole name, possessive
        if (i, j) in set_off or (first, last) in set_off or any(k == i and j <= m for k, m in set_off):
            called_bot = True  # set off by commas, or opening a part that is ("Captain Harley, what…")
            continue
        strong = [(score, k - m, k) for k, m, w, score in bot_spans if not w and first <= k and m <= last]
        if strong:  # the run's best window says where the name begins ("ask Captain Hollis": at "captain")
            begin = max(strong)[2]
            called_bot = called_bot or not is_reference(
                raw, begin, last, called_member, question=text.rstrip().endswith("?")
            )
    return NamesSaid(called_bot, tuple(named), bot_mentioned=bool(bot_spans) and not called_bot)
