"""Fixed sets for the memory benchmark (`benchmarks/memory_bench.py`), written before any run.

- EXTRACTION: member lines and the facts a person would note from them (as keywords each fact must hold).
- RECALL: stored memories of a small guild and questions; which memory a good recall puts first.
- REPLIES: reply situations with memories in the prompt; `use` lists words of which a reply that uses the
  memory says at least one; `avoid` lists words a reply that does not recite its memory never says.
  The reply-quality benchmark (issue 12) can take these as its memory prompts.
"""

from __future__ import annotations

# (line, [keywords of each expected fact]) — an empty list: nothing to remember
EXTRACTION: list[tuple[str, list[list[str]]]] = [
    ("My name's Theodore but please call me Teddy.", [["teddy"]]),
    ("Everyone calls me Sasha.", [["sasha"]]),
    ("I go by Kit these days.", [["kit"]]),
    ("My sister Ingrid just started med school.", [["sister", "ingrid"]]),
    ("my brother's name is Tomas", [["brother", "tomas"]]),
    ("I have a cat called Pretzel who hates mornings.", [["cat", "pretzel"]]),
    ("We got a puppy last week, I have a puppy named Noodle.", [["puppy", "noodle"]]),
    ("I absolutely love bouldering.", [["bouldering"]]),
    ("I'm really into old Italian westerns.", [["westerns"]]),
    ("I can't stand olives.", [["olives"]]),
    ("I don't like horror movies at all.", [["horror"]]),
    ("My favorite band is Khruangbin.", [["khruangbin"]]),
    ("My favourite season is autumn, obviously.", [["autumn"]]),
    ("I live in Porto now.", [["porto"]]),
    ("I grew up in Winnipeg.", [["winnipeg"]]),
    ("I'm from Nairobi originally.", [["nairobi"]]),
    ("I work as a paramedic, night shifts mostly.", [["paramedic"]]),
    ("I teach chemistry at a high school.", [["chemistry"]]),
    ("I'm learning to play the cello.", [["cello"]]),
    ("I'm training for a half marathon in May.", [["marathon"]]),
    ("Next weekend I'm going camping with my cousins.", [["camping"]]),
    ("I'm flying to Seoul on Thursday.", [["seoul"]]),
    ("I'm planning to repaint the bathroom.", [["repaint", "bathroom"]]),
    ("Tomorrow I have to finish my thesis draft.", [["thesis"]]),
    ("My mom makes the best dumplings.", [["mom", "dumplings"]]),
    ("My dad is a retired pilot.", [["dad", "pilot"]]),
    ("My birthday is on the ninth of March.", [["march"]]),
    ("I love hiking and my girlfriend Lena loves it too.", [["hiking"], ["girlfriend", "lena"]]),
    ("I'm Devi, by the way, and I'm into pottery.", [["pottery"]]),
    # nothing to keep: questions, wishes, opinions about others, small talk
    ("What do you like to do on weekends?", []),
    ("Do you think it's going to rain?", []),
    ("I'd like a coffee right now.", []),
    ("If I won the lottery I'd buy a boat.", []),
    ("That's so funny.", []),
    ("Juniper, what should I cook tonight?", []),
    ("Yeah, I think so too.", []),
    ("Do you like jazz?", []),
    ("Wait, what did you say?", []),
    ("I guess I could try that.", []),
    ("Oh no, the pizza's burning.", []),
]

# Members and their memories (kind, text) in one guild, for recall.
RECALL_MEMBERS: dict[str, list[tuple[str, str]]] = {
    "Noor": [
        ("fact", "wants to be called Noor"),
        ("fact", "sister Hana is a vet in Leeds"),
        ("fact", "loves rock climbing"),
        ("fact", "is learning Portuguese"),
        ("fact", "has a dog called Pepper"),
        ("fact", "is going to Lisbon in June"),
        ("fact", "works as a nurse"),
        ("summary", "talked about a disastrous sourdough attempt and her new climbing shoes"),
        ("summary", "talked about a job interview at the children's hospital"),
    ],
    "Felix": [
        ("fact", "brother Jonas plays bass in a band"),
        ("fact", "doesn't like mushrooms"),
        ("fact", "lives in Hamburg"),
        ("fact", "favorite game is Hollow Knight"),
        ("fact", "is training for a triathlon"),
        ("summary", "talked about fixing his old motorbike and a trip to the Baltic sea"),
    ],
}

# (asker, question, text of the memory a good recall ranks first)
RECALL: list[tuple[str, str, str]] = [
    ("Noor", "What did I tell you about my sister?", "sister Hana is a vet in Leeds"),
    ("Noor", "Do you remember my dog's name?", "has a dog called Pepper"),
    ("Noor", "Which language am I learning again?", "is learning Portuguese"),
    ("Noor", "Where am I travelling this summer?", "is going to Lisbon in June"),
    ("Noor", "What's my job, do you remember?", "works as a nurse"),
    (
        "Noor",
        "Remember my bread baking disaster?",
        "talked about a disastrous sourdough attempt and her new climbing shoes",
    ),
    ("Noor", "How do you think my interview went?", "talked about a job interview at the children's hospital"),
    ("Noor", "What sport do I do?", "loves rock climbing"),
    ("Felix", "What instrument does my brother play?", "brother Jonas plays bass in a band"),
    ("Felix", "Would you put mushrooms on my pizza?", "doesn't like mushrooms"),
    ("Felix", "Which city do I live in?", "lives in Hamburg"),
    ("Felix", "What's my favourite game?", "favorite game is Hollow Knight"),
    ("Felix", "What am I training for?", "is training for a triathlon"),
    (
        "Felix",
        "Did I ever get that motorbike running?",
        "talked about fixing his old motorbike and a trip to the Baltic sea",
    ),
    ("Felix", "Do you remember what my brother does?", "brother Jonas plays bass in a band"),
    ("Noor", "Is Pepper allowed on the sofa, what do you think?", "has a dog called Pepper"),
]

# Reply situations: members present, their memories, the history (speaker, text), the situation, and the
# words a reply that uses the memory contains (`use`) / that a reply that keeps it to itself never says (`avoid`).
REPLIES: list[dict] = [
    {
        "members": {"Noor": RECALL_MEMBERS["Noor"][:4]},
        "history": [("Noor", "Juniper, what did I tell you about my sister?")],
        "situation": "Noor is here with you. Noor is talking to you; reply to Noor.",
        "use": ["hana", "vet", "leeds"],
    },
    {
        "members": {"Felix": RECALL_MEMBERS["Felix"][:3]},
        "history": [("Felix", "Hey Juniper, which city do I live in?")],
        "situation": "Felix is here with you. Felix is talking to you; reply to Felix.",
        "use": ["hamburg"],
    },
    {
        "members": {"Noor": [("fact", "has a dog called Pepper")]},
        "history": [("Noor", "Do you remember my dog's name, Juniper?")],
        "situation": "Noor is here with you. Noor is talking to you; reply to Noor.",
        "use": ["pepper"],
    },
    {
        "members": {"Felix": [("fact", "brother Jonas plays bass in a band")]},
        "history": [("Felix", "Juniper, what instrument does my brother play?")],
        "situation": "Felix is here with you. Felix is talking to you; reply to Felix.",
        "use": ["bass"],
    },
    {
        "members": {"Ama": [("fact", "favorite food is jollof rice"), ("fact", "lives in Accra")]},
        "history": [("Ama", "What's my favorite food again, Juniper?")],
        "situation": "Ama is here with you. Ama is talking to you; reply to Ama.",
        "use": ["jollof"],
    },
    {
        "members": {"Ravi": [("fact", "is learning the violin"), ("fact", "works as a chef")]},
        "history": [("Ravi", "Juniper, do you remember what instrument I'm learning?")],
        "situation": "Ravi is here with you. Ravi is talking to you; reply to Ravi.",
        "use": ["violin"],
    },
    {
        "members": {"Mei": [("fact", "wants to be called Mimi"), ("fact", "loves hiking")]},
        "history": [("Mei", "Juniper, what did I ask you to call me?")],
        "situation": "Mei is here with you. Mei is talking to you; reply to Mei.",
        "use": ["mimi"],
    },
    {
        "members": {"Felix": [("fact", "is training for a triathlon")]},
        "history": [("Felix", "So Juniper, you remember what I'm training for?")],
        "situation": "Felix is here with you. Felix is talking to you; reply to Felix.",
        "use": ["triathlon"],
    },
    # greeting a returning member: something from last time
    {
        "members": {"Noor": [("summary", "talked about a job interview at the children's hospital")]},
        "history": [],
        "situation": "Noor just joined the voice channel. Noor is here with you. Greet Noor by name in one short sentence.",
        "use": ["interview", "hospital", "job"],
    },
    {
        "members": {"Felix": [("summary", "talked about fixing his old motorbike")]},
        "history": [],
        "situation": "Felix just joined the voice channel. Felix is here with you. Greet Felix by name in one short sentence.",
        "use": ["motorbike", "bike"],
    },
    {
        "members": {"Ama": [("summary", "talked about planting tomatoes on her balcony")]},
        "history": [],
        "situation": "Ama just joined the voice channel. Ama is here with you. Greet Ama by name in one short sentence.",
        "use": ["tomato", "balcony", "plant"],
    },
    # not asked: the memory stays unsaid
    {
        "members": {"Noor": RECALL_MEMBERS["Noor"][:4]},
        "history": [("Noor", "Juniper, what should I cook tonight? I have eggs and rice.")],
        "situation": "Noor is here with you. Noor is talking to you; reply to Noor.",
        "avoid": ["hana", "leeds", "portuguese", "climbing"],
    },
    {
        "members": {"Felix": RECALL_MEMBERS["Felix"][:5]},
        "history": [("Felix", "Juniper, do you think it will rain tomorrow?")],
        "situation": "Felix is here with you. Felix is talking to you; reply to Felix.",
        "avoid": ["jonas", "hamburg", "hollow", "mushroom"],
    },
    {
        "members": {"Ravi": [("fact", "is learning the violin"), ("fact", "works as a chef")]},
        "history": [("Ravi", "Juniper, what's a good movie for tonight?")],
        "situation": "Ravi is here with you. Ravi is talking to you; reply to Ravi.",
        "avoid": ["violin", "chef"],
    },
    {
        "members": {"Mei": [("fact", "wants to be called Mimi"), ("fact", "sister Lan lives in Hanoi")]},
        "history": [("Mei", "Juniper, I just finished a really long book.")],
        "situation": "Mei is here with you. Mei is talking to you; reply to Mei.",
        "avoid": ["lan", "hanoi"],
    },
    {
        "members": {"Ama": [("fact", "lives in Accra"), ("fact", "is going to Paris next month")]},
        "history": [("Ama", "Juniper, name a fun board game.")],
        "situation": "Ama is here with you. Ama is talking to you; reply to Ama.",
        "avoid": ["accra", "paris"],
    },
]

# Calls to summarize: (member, [(speaker, text)], words a useful summary of the member's part holds)
SUMMARY_CALLS: list[tuple[str, list[tuple[str, str]], list[str]]] = [
    (
        "Noor",
        [
            ("Noor", "I finally got the job at the children's hospital, I start in March."),
            ("Juniper", "That's wonderful, congratulations!"),
            ("Noor", "Thanks! I'm nervous about the night shifts though."),
            ("Felix", "You'll be great."),
            ("Noor", "Also my sourdough failed again, it was flat as a pancake."),
        ],
        ["hospital", "job", "sourdough"],
    ),
    (
        "Felix",
        [
            ("Felix", "I spent the whole weekend fixing my old motorbike."),
            ("Juniper", "Did it work?"),
            ("Felix", "It runs now, so I'm riding it to the Baltic sea next month."),
            ("Noor", "Nice!"),
        ],
        ["motorbike", "baltic"],
    ),
    (
        "Ama",
        [
            ("Ama", "My tomatoes on the balcony are finally turning red."),
            ("Juniper", "Oh, lovely!"),
            ("Ama", "I want to make a big pot of jollof rice with them."),
        ],
        ["tomato", "jollof", "balcony"],
    ),
    (
        "Ravi",
        [
            ("Ravi", "Work was brutal, we had three hundred covers on Saturday."),
            ("Juniper", "Three hundred? In one night?"),
            ("Ravi", "Yeah, and the dishwasher broke halfway through."),
            ("Mei", "Oh no."),
            ("Ravi", "I'm taking Monday off to sleep."),
        ],
        ["covers", "dishwasher", "saturday", "work"],
    ),
    (
        "Mei",
        [
            ("Mei", "I started reading a huge fantasy series, fourteen books."),
            ("Juniper", "Which one?"),
            ("Mei", "The Wheel of Time. I'm on book two and I already love Moiraine."),
        ],
        ["wheel", "fantasy", "book"],
    ),
    (
        "Sam",
        [
            ("Sam", "We adopted a rescue greyhound called Pickle."),
            ("Juniper", "Pickle! Great name."),
            ("Sam", "She is terrified of the stairs but loves the couch."),
        ],
        ["greyhound", "pickle", "rescue"],
    ),
]
