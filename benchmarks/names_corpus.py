"""The lines of the names benchmark: templates × the personas' names × simulator voices × background noise.

Lines that call the bot by name (at the start, in the middle, at the end, the name alone) and lines that
do not (a member with a similar name called, words that sound like the name, the name said about the bot to
someone else, a member present talked about, plain remarks to the room). Generated from a fixed seed. The `heldout` templates, member names
and voice variants were written apart and never looked at while tuning the matcher or the acoustic look.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.voices import MemberVoice

SEED = 19


@dataclass(frozen=True)
class NamePersona:
    name: str
    aliases: tuple[str, ...]
    called_as: tuple[str, ...]  # how members call it in the lines
    similar: tuple[str, ...]  # members whose names sound like it (present in some lines)
    sound_alike: tuple[str, ...]  # lines with words that sound like the name, not addressing anyone


PERSONAS = (
    NamePersona(
        "Juniper",
        ("June", "Junie"),
        ("Juniper",),
        ("Jennifer", "Junie"),
        (
            "You never know what will happen tomorrow.",
            "The janitor locked the front door.",
            "Jupiter is the biggest planet of all.",
            "My junior colleague started today.",
            "Do you need her phone number?",
            "The gin had a strong taste of berries.",
        ),
    ),
    NamePersona(
        "Trixie",
        ("Trix",),
        ("Trixie",),
        ("Dixie", "Tracy"),
        (
            "That puzzle was really tricky.",
            "Those tricks he showed us were great.",
            "The tractor is stuck in the mud.",
            "I need a taxi to the airport.",
            "We should try the tricky level again.",
            "Dixieland jazz is fun to dance to.",
        ),
    ),
    NamePersona(
        "Captain Hollis",
        ("Captain", "Hollis", "Cap"),
        ("Captain Hollis", "Hollis"),
        ("Holly", "Holland"),
        (
            "We had a lovely holiday by the sea.",
            "The hollow tree fell down last night.",
            "Put the cap back on the bottle.",
            "The captain of the team was late.",
            "His hobbies are fishing and golf.",
            "I called the police about the noise.",
        ),
    ),
)
ORDINARY_MEMBERS = ("Alice", "Bob", "Chen", "Eve", "Dana", "Marco")
HELDOUT_MEMBERS = ("Priya", "Tomasz", "Keiko", "Olu")

ADDRESSED = {
    "start": (
        "{N}, what did Alice want to cook?",
        "{N}, how far away is the moon?",
        "{N}, can you tell us a joke?",
        "Hey {N}, what time is it in Tokyo?",
        "{N}, do you like salty snacks?",
        "{N}, what should we play next?",
    ),
    "middle": (
        "So tell me, {N}, what is your favourite season?",
        "I was wondering, {N}, have you ever seen snow?",
        "Okay so {N}, what would you cook for dinner?",
        "Listen, {N}, can you help us decide?",
    ),
    "end": (
        "What should I name my new puppy, {N}?",
        "Can you give us a riddle, {N}?",
        "What do you think about that, {N}?",
        "Any ideas for the weekend, {N}?",
        "Tell us a story about a dragon, {N}.",
        "Where would you go on holiday, {N}?",
    ),
    "alone": ("{N}?", "Hey {N}!", "{N}, are you there?"),
}
HELDOUT_ADDRESSED = {
    "start": (
        "{N}, which planet has the most moons?",
        "{N}, could you settle an argument for us?",
        "Hello {N}, how is your day going?",
    ),
    "middle": ("Right, {N}, what is the capital of Canada?", "You know, {N}, I never asked your favourite food."),
    "end": ("How do you make pancakes, {N}?", "Is it going to rain today, {N}?", "Who wins this round, {N}?"),
    "alone": ("{N}!", "Um, {N}?"),
}
NOT_ADDRESSED = {
    "similar_member": (
        "{S}, can you pass me the salt?",
        "{S}, are you coming to the game tomorrow?",
        "Did you finish the homework, {S}?",
        "{S}, where did you put the car keys?",
        "Good morning, {S}!",
    ),
    "third_person": (
        "Bob, did you hear what {N} said?",
        "I told {N} about the trip yesterday.",
        "{N}'s voice is really nice.",
        "I agree with {N} on that one.",
        "Alice, ask {N} about the picnic later.",
    ),
    "no_name": (
        "What did Alice want to cook?",
        "Did anyone see the game last night?",
        "I think we should order pizza tonight.",
        "What time does the movie start?",
        "My brother bought a new bicycle yesterday.",
        "Can someone open the window?",
        "Where did you park the car?",
        "Is anyone hungry yet?",
        "That film was far too long.",
        "Who wants to play another round?",
    ),
}
HELDOUT_NOT_ADDRESSED = {
    "similar_member": ("{S}, do you want some tea?", "Thanks for the lift, {S}."),
    "third_person": ("Eve, {N} told me a great joke earlier.", "We could ask {N} later."),
    "no_name": (
        "Which bus goes to the museum?",
        "The soup needs more salt.",
        "How was your exam?",
        "Should we leave before it gets dark?",
        "I lost my umbrella again.",
    ),
}
# A member present talked about, nobody called: the look listens on these too (the call Whisper lost may be the
# bot's: "What did Alice want to cook?" for "Juniper, what did Alice want to cook?"), and must find none.
MEMBER_MENTIONED = (
    "What did {M} want to cook?",
    "Did {M} finish the homework?",
    "I think {M} would like that film.",
    "Is {M} coming to the party tonight?",
    "Can {M} bring the snacks?",
)
HELDOUT_MEMBER_MENTIONED = ("Has {M} seen the new puzzle?", "Maybe {M} knows the way.")

# Every simulator voice of the turn corpus, and variants of speed and pitch around them.
BASE_VOICES = (
    MemberVoice("piper", semitones=3.0, speed=0.9),
    MemberVoice("piper", semitones=-3.0, speed=0.95),
    MemberVoice("piper", semitones=5.0, speed=1.0),
    MemberVoice("piper", semitones=-5.0, speed=0.9),
    MemberVoice("piper", semitones=1.0, speed=1.05),
    MemberVoice("piper", semitones=-1.5, speed=0.85),
    MemberVoice("espeak", "en-us+klatt2", pitch=78, speed=0.9),
    MemberVoice("espeak", "en-us+klatt2", pitch=65, speed=0.85),
)
VARIANT_VOICES = (
    MemberVoice("piper", semitones=0.0, speed=1.15),
    MemberVoice("piper", semitones=2.0, speed=0.8),
    MemberVoice("piper", semitones=-4.0, speed=1.1),
    MemberVoice("espeak", "en-us+klatt2", pitch=70, speed=1.0),
)
HELDOUT_VOICES = (
    MemberVoice("piper", semitones=4.0, speed=1.1),
    MemberVoice("espeak", "en-us+klatt2", pitch=60, speed=0.95),
)
NOISE_SNR_DB = (12.0, 18.0)  # background noise, when a line has it, at an SNR drawn from this range


@dataclass(frozen=True)
class NameLine:
    text: str
    persona: str
    expected: bool  # the bot is addressed
    kind: str  # position ("start", "middle", "end", "alone") or a not-addressed family
    members: tuple[str, ...]  # the other members present (the speaker left out)
    voice: MemberVoice
    noise_snr_db: float | None
    split: str  # "dev" or "heldout"


def _members(rng: random.Random, pool: tuple[str, ...], persona: NamePersona, with_similar: bool) -> tuple[str, ...]:
    chosen = rng.sample(pool, 2)
    if with_similar:
        chosen.append(rng.choice(persona.similar))
    return tuple(chosen)


def build_lines(*, copies: int = 3, seed: int = SEED) -> list[NameLine]:
    """Every template with every name `copies` times (dev) or once (held out), voices and noise drawn per line."""
    rng = random.Random(seed)
    lines: list[NameLine] = []

    def voice(split: str, i: int) -> MemberVoice:
        pool = HELDOUT_VOICES + BASE_VOICES if split == "heldout" else BASE_VOICES + VARIANT_VOICES
        return pool[i % len(pool)] if i < len(pool) else rng.choice(pool)

    def add(
        text: str,
        persona: NamePersona,
        expected: bool,
        kind: str,
        split: str,
        similar_present: bool,
        forced_members: tuple[str, ...] = (),
    ) -> None:
        pool = HELDOUT_MEMBERS if split == "heldout" else ORDINARY_MEMBERS
        members = forced_members or _members(rng, pool, persona, similar_present)
        noise = rng.uniform(*NOISE_SNR_DB) if rng.random() < 0.5 else None
        lines.append(NameLine(text, persona.name, expected, kind, members, voice(split, len(lines)), noise, split))

    for split, templates, copies_here in (("dev", ADDRESSED, copies), ("heldout", HELDOUT_ADDRESSED, 1)):
        for position, texts in templates.items():
            for template in texts:
                for persona in PERSONAS:
                    for called in persona.called_as:
                        for _ in range(copies_here):
                            add(template.format(N=called), persona, True, position, split, rng.random() < 0.4)
    for split, families in (("dev", NOT_ADDRESSED), ("heldout", HELDOUT_NOT_ADDRESSED)):
        for persona in PERSONAS:
            for family, texts in families.items():
                for template in texts:
                    if family == "similar_member":
                        for similar in persona.similar:
                            pool = HELDOUT_MEMBERS if split == "heldout" else ORDINARY_MEMBERS
                            present = (similar, *rng.sample(pool, 1))
                            add(template.format(S=similar), persona, False, family, split, True, present)
                    else:
                        present = ("Bob", "Alice", "Eve") if family == "third_person" else ()
                        add(template.format(N=persona.called_as[0]), persona, False, family, split, False, present)
            if split == "dev":
                for text in persona.sound_alike:
                    add(text, persona, False, "sound_alike", split, False)
    # added last, so that every line above keeps its voice and noise from earlier runs
    for split, texts, pool in (
        ("dev", MEMBER_MENTIONED, ORDINARY_MEMBERS),
        ("heldout", HELDOUT_MEMBER_MENTIONED, HELDOUT_MEMBERS),
    ):
        for persona in PERSONAS:
            for template in texts:
                present = tuple(rng.sample(pool, 2))
                add(template.format(M=present[0]), persona, False, "member_mentioned", split, False, present)
    return lines
