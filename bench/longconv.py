"""A deterministic generator of long conversations with facts told early and asked about late.

One conversation of many chat sessions (a day or two apart, minutes between turns). Most turns
are small talk; some tell a fact. Later a question probes it:

- single:   one fact, one evidence turn (asked with overlapping words or paraphrased);
- updated:  a fact restated with a new value 1-2 times; only the newest statement is evidence;
- spread:   a plan told over three turns; all three are evidence;
- temporal: "when did I ...?"; the evidence turn's date is the answer.

Small talk reuses the same names, places and animals, so keyword matches are not enough, and
every question is asked at least ``min_gap`` turns after its newest evidence, so a recency window
of a few thousand tokens cannot hold it. Questions are probes: they are not part of the history.
``generate(sessions=300, seed=7)`` gives ~3,000 turns and ~120 questions; the same seed always
gives the same conversation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from memchat.core.messages import Message

__all__ = ["LongConversation", "Question", "Turn", "generate"]

START = 1_704_067_200.0  # 2024-01-01 00:00 UTC

NAMES = (
    "Alice Bruno Carmen Dmitri Elena Farid Greta Hugo Ingrid Jonas Keiko Lars Mira Nadia Omar "
    "Priya Quentin Rosa Sven Tomas Uma Viktor Wanda Xavier Yusuf Zara Amara Boris Chloe Diego "
    "Esther Felix Gloria Hassan Irene Jasper Kofi Leila Marco Nora Oscar Pablo Rania Stefan "
    "Tessa Ulrich Vera Walter Yara Zoltan Anika Bram Celia Dario Emil Fiona Gavin Hana Ivo Julia"
).split()
SURNAMES = "Brandt Costa Novak Lindqvist Okafor Moreau Tanaka Rossi Kowalski Silva".split()
CITIES = (
    "Lisbon Porto Madrid Valencia Lyon Marseille Turin Naples Vienna Graz Prague Brno Krakow "
    "Gdansk Riga Tallinn Helsinki Bergen Oslo Malmo Aarhus Hamburg Leipzig Munich Zurich Basel "
    "Ghent Utrecht Dublin Cork Glasgow Leeds Bristol Seville Bilbao Bologna Verona Ljubljana "
    "Zagreb Split Sofia Athens Thessaloniki Izmir Tbilisi Yerevan Montreal Quebec Denver Austin"
).split()
COUNTRIES = (
    "Japan Peru Iceland Morocco Vietnam Chile Norway Kenya Mexico Portugal Canada Nepal Greece "
    "Scotland Argentina Croatia Jordan Georgia Mongolia Ireland Brazil Tanzania Finland Laos"
).split()
RELATIVES = "sister brother cousin aunt uncle niece nephew grandmother grandfather".split()
ANIMALS = [("kitten", "cat"), ("puppy", "dog"), ("bunny", "rabbit"), ("parakeet", "bird")]
PET_NAMES = (
    "Biscuit Pepper Mochi Ziggy Noodle Olive Pickles Waffles Sprout Juniper Tofu Pixel".split()
)
ACTIVITIES = (
    "pottery salsa fencing climbing cello chess sailing yoga judo sketching welding ceramics "
    "tango archery rowing calligraphy"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
FOODS = ["shellfish", "peanuts", "sesame", "kiwi", "mustard", "celery", "lupin", "buckwheat"]
COLORS = "red blue green silver black white yellow orange".split()
CARS = "Volvo Skoda Toyota Mazda Fiat Renault Subaru Kia Peugeot Honda".split()
TASKS = [
    "move house",
    "paint the kitchen",
    "fix the garden fence",
    "assemble a wardrobe",
    "prepare a birthday party",
    "review a job application",
    "repair a bicycle",
]
EVENTS = [
    ("ran my first half marathon", "When did I run my first half marathon?"),
    ("passed my driving test", "When did I pass my driving exam?"),
    ("got my promotion to team lead", "When was I promoted?"),
    ("planted the apple tree in the garden", "When did I plant the apple tree?"),
    ("finished my thesis draft", "When did I finish the draft of my thesis?"),
    ("broke my wrist skating", "When did I hurt my wrist?"),
    ("signed the lease for the new studio", "When did I sign the studio lease?"),
    ("adopted the old piano from my neighbour", "When did I get the piano?"),
    ("started learning Portuguese", "When did I begin studying Portuguese?"),
    ("sold my old motorbike", "When did I get rid of the motorbike?"),
    ("met my favourite author at a book signing", "When did I meet the writer I admire?"),
    ("got my first tattoo", "When did I get inked for the first time?"),
    ("won the office chess tournament", "When did I win the chess competition at work?"),
    ("moved into the flat on the river", "When did I move into my riverside apartment?"),
    ("baked my first loaf of sourdough", "When did I first make sourdough bread?"),
    ("saw the northern lights", "When did I see the aurora?"),
    ("quit smoking", "When did I stop smoking?"),
    ("joined the choir", "When did I start singing in the choir?"),
    ("had my wisdom teeth removed", "When did I have dental surgery?"),
    ("went skydiving for the first time", "When did I jump out of a plane?"),
]
TOPICS = (
    "weather groceries laundry podcast documentary recipe traffic meeting deadline gym garden "
    "playlist museum concert football series novel coffee bakery train bus budget printer "
    "spreadsheet presentation dentist haircut plumber neighbour festival market sunset beach"
).split()
SMALL_TALK = [
    "The {t} today was a bit of a mess, but I managed somehow.",
    "I spent the morning on the {t} and then had lunch with {n}.",
    "{n} from work recommended a {t} about {c}, have you heard of it?",
    "Do you have any tips for keeping a {t} under control?",
    "I walked {k} steps today, mostly to the {t} and back.",
    "My {r} called to chat about the {t}; nothing special.",
    "Saw a {a} near the {t} this afternoon, so cute.",
    "I keep thinking about visiting {c} some day, the photos of the {t} look great.",
    "We watched a film set in {c} last night, the {t} scenes were beautiful.",
    "Quick question: how long should I boil eggs for a salad?",
    "I had {k} emails waiting after the {t}, what a day.",
    "{n} and I argued about the {t} again, it's becoming a running joke.",
    "Can you suggest a name for a {t} group chat?",
    "I'm tired, the {t} took way longer than planned.",
    "Remind me why people like {t} so much? I don't get it.",
]
REPLIES = [
    "That sounds like quite a day. Taking short breaks can make these things easier.",
    "Nice! Small routines like that add up over time.",
    "I haven't got a strong opinion, but many people enjoy it for the atmosphere.",
    "A simple trick is to plan the next step the evening before.",
    "Good to hear. Let me know if you want ideas for the weekend.",
    "That's a fun detail. Would you like a few suggestions related to it?",
    "Interesting! It is worth writing down what worked, for next time.",
    "Sure. Around nine to ten minutes usually works well for hard-boiled eggs.",
    "Understandable. Maybe something lighter this evening would help you recharge.",
    "Noted. If it keeps happening, a short checklist might help.",
]


@dataclass(frozen=True, slots=True)
class Turn:
    user: str
    assistant: str
    at: float


@dataclass(frozen=True, slots=True)
class Question:
    """Asked after ``turns[:after]``; ``facts[i]`` is the fact sentence of ``evidence[i]``."""

    after: int
    text: str
    kind: str
    evidence: tuple[int, ...]
    facts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LongConversation:
    turns: list[Turn]
    questions: list[Question]
    seed: int

    def messages(self) -> list[Message]:
        """The turns as messages, with stable ids u<i>/a<i> and their timestamps."""
        out: list[Message] = []
        for i, t in enumerate(self.turns):
            out.append(Message("user", t.user, id=f"u{i}", created_at=t.at))
            out.append(Message("assistant", t.assistant, id=f"a{i}", created_at=t.at + 20))
        return out


@dataclass
class _Plan:
    kind: str
    statements: list[str]  # told in this order, at increasing turns
    question: str
    evidence: list[int]  # which statements are evidence (indexes into statements)


def _person(rng: random.Random, used: set[str]) -> str:
    """A full name no other fact uses (small talk shares the first names)."""
    return _fresh(rng, [f"{f} {s}" for f in NAMES for s in SURNAMES], used)


def _single(rng: random.Random, used: set[str]) -> _Plan:
    name = _person(rng, used)
    pick = rng.randrange(5)
    if pick == 0:
        rel, city = rng.choice(RELATIVES), rng.choice(CITIES)
        s = f"My {rel} {name} just moved to {city} for a new job."
        q = rng.choice(
            [f"Which city does my {rel} {name} live in?", f"Where is {name} based these days?"]
        )
    elif pick == 1 and (animal := _once(rng, ANIMALS, used)) is not None:
        young, kind = animal
        pet = _fresh(rng, PET_NAMES, used)
        s = f"Big news: we adopted a {young} yesterday and named it {pet}."
        q = f"What is the name of our {kind}?"
    elif pick == 2:
        act, day = _fresh(rng, ACTIVITIES, used), rng.choice(WEEKDAYS)
        s = f"I signed up for {act} lessons, every {day} evening from now on."
        q = rng.choice(
            [f"On which day is my {act} class?", f"When during the week do I practise {act}?"]
        )
    elif pick == 3 and _once(rng, [("allergy",)], used):
        food = rng.choice(FOODS)
        s = f"The doctor confirmed that I am allergic to {food}, so no more of that for me."
        q = "Is there any food I have to avoid for health reasons?"
    else:
        task, day = rng.choice(TASKS), _date(rng)
        s = f"I promised {name} that I would help {name} {task} on {day}."
        q = f"What did I agree to do for {name}?"
    return _Plan("single", [s], q, [0])


def _updated(rng: random.Random, used: set[str]) -> _Plan:
    name, rel = _person(rng, used), rng.choice(RELATIVES)
    if rng.random() < 0.6 or _once(rng, [("car",)], used) is None:
        cities = rng.sample(CITIES, 3)
        states = [f"My {rel} {name} just moved to {cities[0]} for a new job."]
        states += [f"Update on {name}: moved again, now living in {c}." for c in cities[1:]]
        q = f"Where does my {rel} {name} live now?"
    else:
        color, car = rng.choice(COLORS), rng.sample(CARS, 3)
        states = [f"I finally bought a car, a {color} {car[0]}."]
        states += [
            f"I sold the old car and got a {rng.choice(COLORS)} {c} instead." for c in car[1:]
        ]
        q = "What car do I drive at the moment?"
    n = rng.choice([2, 3])
    return _Plan("updated", states[:n], q, [n - 1])


def _spread(rng: random.Random, used: set[str]) -> _Plan:
    country, friend = _fresh(rng, COUNTRIES, used), _person(rng, used)
    states = [
        f"I've decided: my big holiday this year will be in {country}.",
        f"For the {country} holiday I booked the flights, departing on {_date(rng)}.",
        f"{friend} will come along on the {country} holiday, which makes me happy.",
    ]
    q = f"Remind me of my {country} holiday plans: when do I leave and who is coming?"
    return _Plan("spread", states, q, [0, 1, 2])


def _temporal(rng: random.Random, used: set[str]) -> _Plan:
    pick = _once(rng, EVENTS, used)
    if pick is None:
        return _single(rng, used)
    event, q = pick
    return _Plan("temporal", [f"Guess what, today I {event}!"], q, [0])


def _once(
    rng: random.Random, pool: list[tuple[str, ...]], used: set[str]
) -> tuple[str, ...] | None:
    """A pool entry not used before (its first item marks it used), or None."""
    free = [x for x in pool if x[0] not in used]
    if not free:
        return None
    pick = rng.choice(free)
    used.add(pick[0])
    return pick


def _fresh(rng: random.Random, pool: tuple[str, ...] | list[str], used: set[str]) -> str:
    free = [x for x in pool if x not in used] or list(pool)
    pick = rng.choice(free)
    used.add(pick)
    return pick


def _date(rng: random.Random) -> str:
    month = rng.choice("January February March April May June July August September".split())
    return f"{month} {rng.randint(1, 28)}"


def _reply(rng: random.Random, user: str) -> str:
    """Two or three sentences of assistant small talk, echoing a word of the user's."""
    words = [w.strip(".,!?:;'") for w in user.split() if len(w) > 4]
    echo = f"About the {rng.choice(words).lower()}: " if words else ""
    return echo + " ".join(rng.sample(REPLIES, rng.randint(2, 3)))


def _small_talk(rng: random.Random) -> str:
    return rng.choice(SMALL_TALK).format(
        t=rng.choice(TOPICS),
        n=rng.choice(NAMES),
        c=rng.choice(CITIES + COUNTRIES),
        k=rng.randint(2, 12000),
        r=rng.choice(RELATIVES),
        a=rng.choice(ANIMALS)[rng.randint(0, 1)],
    )


def _timestamps(rng: random.Random, sessions: int) -> list[float]:
    stamps: list[float] = []
    day = START
    for _ in range(sessions):
        day += rng.uniform(0.6, 2.5) * 86_400
        t = day
        for _ in range(rng.randint(6, 14)):
            t += rng.uniform(60, 400)
            stamps.append(t)
    return stamps


def generate(
    sessions: int = 300, seed: int = 7, *, per_turns: int = 25, min_gap: int = 120
) -> LongConversation:
    """A conversation of ``sessions`` sessions, one question per ``per_turns`` turns."""
    rng = random.Random(seed)
    stamps = _timestamps(rng, sessions)
    n = len(stamps)
    users: list[str | None] = [None] * n
    used: set[str] = set()
    makers = [_single] * 8 + [_updated] * 5 + [_spread] * 3 + [_temporal] * 4
    questions: list[Question] = []
    for _ in range(n // per_turns):
        plan = rng.choice(makers)(rng, used)
        slots = _place(rng, users, len(plan.statements), n - min_gap)
        if slots is None:
            continue
        for slot, text in zip(slots, plan.statements, strict=True):
            users[slot] = text
        evidence = tuple(slots[i] for i in plan.evidence)
        after = rng.randint(max(evidence) + min_gap, n)
        facts = tuple(plan.statements[i] for i in plan.evidence)
        questions.append(Question(after, plan.question, plan.kind, evidence, facts))
    turns = [
        Turn(text, _reply(rng, text), at)
        for text, at in zip((u or _small_talk(rng) for u in users), stamps, strict=True)
    ]
    questions.sort(key=lambda q: q.after)
    return LongConversation(turns, questions, seed)


def _place(rng: random.Random, users: list[str | None], k: int, end: int) -> list[int] | None:
    """k free turn slots, in order, spread over the conversation before ``end``."""
    for _ in range(50):
        first = rng.randrange(0, max(1, end - 40 * k))
        slots = [first + j * rng.randint(5, 40) for j in range(k)]
        if slots[-1] < end and all(users[s] is None for s in slots):
            return sorted(slots)
    return None
