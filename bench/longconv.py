"""A deterministic generator of long conversations with facts told early and asked about late.

One conversation of many chat sessions (a day or two apart, minutes between turns). Most turns
are small talk; some tell a fact, and later a question probes it. The questions are written so
that matching words is not enough:

- paraphrased: a question shares no content word with its evidence (Snowball stems, function
  words aside): fact "today I went skydiving for the first time!", question "When did I jump
  out of a plane?". A share ``overlap`` of the questions (0.4 by default; with seed 7, 56 of
  121) instead asks the variant that shares exactly one word, often a first name ("What name
  did Omar give the dog?"). BM25 finds few of the first kind and most of the second;
- distractors: each fact comes with one to three look-alikes told elsewhere: the same kind of
  fact about another person ("My colleague Omar Costa adopted a puppy called Biscuit."), the
  same event on another day ("I failed my driving test today ..."), or an older value. The
  question is specific (my own fact, or the person's role or first name), so one turn is right.

The question kinds (``Question.kind``):

- single:     one fact about me, each template once ("The doctor confirmed that I am allergic
  to sesame." -> "Is there any food I have to avoid for health reasons?");
- distractor: a fact about someone, asked by their role in other words (aunt -> "my mum's
  sister") or by first name, with the same fact told about others ("My aunt Wanda Brandt
  bought a house in Tbilisi." -> "Where did my mum's sister purchase a home?");
- updated:    a fact restated with a new value once or twice; only the newest statement is
  evidence (the question asks the current value), the older ones are distractors ("Rent went
  up again, to 1750 euros." -> "How much does our flat cost us each month?");
- spread:     a plan told over two or three turns a few minutes to hours apart, the later ones
  only by reference ("I got two tickets for the Glass Orchard concert." ... "It is at the
  Roundhouse on September 9." ... "Omar Moreau is coming with me." -> "Which show am I
  attending, where, and with whom?"); all are evidence;
- temporal:   "when did I ...?" about an event told as "today I ..."; the evidence turn's date is
  the answer, and the event is also told about others or tried on another day.

A role or first name that keys a question is used by no other fact of the same template (or
group of templates), so each question has one right answer, and ``generate`` drops the rare
question whose fact sentence is not in exactly one turn. Small talk reuses the same first
names, places and animals, and half of it touches the questions' topics without answering them
(planes, pets, rent, teeth, weddings, coffee). Fact turns sometimes carry a greeting or a
closing sentence around the fact. Every question is asked at least ``min_gap`` turns after its
newest evidence, so a recency window of a few thousand tokens cannot hold it. Questions are
probes: they are not part of the history. ``generate(sessions=300, seed=7)`` gives ~3,000 turns
and ~120 questions; the same seed always gives the same conversation. The templates are
hand-written (about 110), so facts and questions repeat shapes far more than a real chat does,
and the scores move by several points from one seed to another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench._longconv_data import (
    ANIMALS,
    CITIES,
    COUNTRIES,
    DERIVED,
    FAMILIES,
    FEMALE,
    FRESH,
    GAPS,
    HE,
    LEADS,
    MALE,
    NAMES,
    OLD,
    POOLS,
    RELATIVES,
    REPLIES,
    ROLES,
    SHE,
    SMALL_TALK,
    START,
    SURNAMES,
    TAILS,
    TOPICAL,
    TOPICS,
    WEIGHTS,
    Pool,
    _Family,
)
from memchat.core.messages import Message

__all__ = ["LongConversation", "Question", "Turn", "generate"]


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
    distractors: list[str]  # told anywhere before the question


class _Exhausted(Exception):
    """A pool whose values are used once per conversation has none left."""


class _Values(dict[str, str]):
    """One plan's template values, drawn on first use and distinct within the plan.

    ``name``/``role`` without a suffix is the question's key when ``key`` says so: a key role or
    first name is used by no other fact of the same family (or group of families).
    """

    def __init__(
        self, rng: random.Random, used: set[str], fam: _Family, group: str, key: str = ""
    ) -> None:
        super().__init__()
        self.rng, self.used, self.group, self.key = rng, used, group, key
        self.roles = [r for r in ROLES if not (fam.young and r in OLD)]

    def __missing__(self, key: str) -> str:
        base = key.rstrip("0123456789")
        suffix = key[len(base) :]
        if base in DERIVED:
            source, derive = DERIVED[base]
            value = derive(self[source + suffix])
        elif base == "role":
            value = self._role(self.key == "role" and not suffix)
        elif base == "name":
            role = self.get("role" + suffix, "")
            names = FEMALE if role in SHE else MALE if role in HE else NAMES
            value = self._name(self.key == "name" and not suffix, names)
        else:
            value = self._pick(base, POOLS[base])
        self[key] = value
        return value

    def _taken(self, base: str) -> set[str]:
        return {v for k, v in self.items() if k.rstrip("0123456789") == base}

    def _pick(self, base: str, pool: Pool) -> str:
        if callable(pool):
            return pool(self.rng)
        free = [x for x in pool if x not in self._taken(base)]
        if base in FRESH:
            free = [x for x in free if f"{base}={x}" not in self.used]
            if not free:
                raise _Exhausted(base)
        pick = self.rng.choice(free)
        if base in FRESH:
            self.used.add(f"{base}={pick}")
        return pick

    def _role(self, key: bool) -> str:
        mark, reserved = f"{self.group}:role:", f"{self.group}!role:"
        if key:
            free = [r for r in self.roles if mark + r not in self.used]
            if len(free) < 5:  # keep a few roles for the other facts of the group
                raise _Exhausted("role")
            pick = self.rng.choice(free)
            self.used.add(reserved + pick)
        else:
            taken = self._taken("role")
            free = [r for r in self.roles if reserved + r not in self.used and r not in taken]
            pick = self.rng.choice(free)
        self.used.add(mark + pick)
        return pick

    def _name(self, key: bool, names: list[str]) -> str:
        firsts = {v.split()[0] for v in self._taken("name")}
        mark, reserved = f"{self.group}:", f"{self.group}!"
        free = [
            f
            for f in names
            if f not in firsts
            and reserved + f not in self.used
            and not (key and mark + f in self.used)
        ]
        if not free:
            raise _Exhausted("name")
        first = self.rng.choice(free)
        if key:
            self.used.add(reserved + first)
        self.used.add(mark + first)
        surnames = [s for s in SURNAMES if f"{first} {s}" not in self.used] or SURNAMES
        full = f"{first} {self.rng.choice(surnames)}"
        self.used.add(full)
        return full


def _plan(rng: random.Random, used: set[str], kind: str, overlap: float) -> _Plan | None:
    """A question of this kind from a family not used yet (or a reusable one), or None."""
    families = FAMILIES[kind]
    free = [i for i, f in enumerate(families) if f.reuse or f"{kind}{i}" not in used]
    if not free:
        return None
    i = rng.choice(free)
    variant = int(rng.random() < overlap)
    plan = _build(rng, used, kind, i, variant)
    if plan is None and variant == 0 and "{rolep}" in families[i].questions[0]:
        plan = _build(rng, used, kind, i, 1)  # every role is some question's key: ask by name
    return plan


def _build(rng: random.Random, used: set[str], kind: str, i: int, variant: int) -> _Plan | None:
    """Fill family ``i``'s templates; None (and ``used`` untouched) if a pool ran out."""
    fam = FAMILIES[kind][i]
    question = fam.questions[variant]
    key = "role" if "{rolep}" in question else "name" if "{first}" in question else ""
    before = set(used)
    values = _Values(rng, used, fam, fam.group or f"{kind}{i}", key)
    told = fam.statements
    if kind == "updated" and len(told) > 2:
        told = told[: rng.choice((2, 3))]
    try:
        if key == "role":
            _ = values["role"]  # reserve the key role before other roles are drawn
        statements = [s.format_map(values) for s in told]
        text = question.format_map(values)
        distractors = [d.format_map(values) for d in fam.distractors]
    except _Exhausted:
        used.intersection_update(before)
        return None
    used.add(f"{kind}{i}")
    evidence = [len(statements) - 1] if kind == "updated" else list(range(len(statements)))
    return _Plan(kind, statements, text, evidence, distractors)


def _wrap(rng: random.Random, fact: str) -> str:
    """The user turn telling a fact: sometimes with a greeting before or a closing after it."""
    lead = f"{rng.choice(LEADS)} " if rng.random() < 0.4 else ""
    tail = f" {rng.choice(TAILS)}" if rng.random() < 0.3 else ""
    return lead + fact + tail


def _reply(rng: random.Random, user: str) -> str:
    """Two or three sentences of assistant small talk, echoing a word of the user's."""
    words = [w.strip(".,!?:;'") for w in user.split() if len(w) > 4]
    echo = f"About the {rng.choice(words).lower()}: " if words else ""
    return echo + " ".join(rng.sample(REPLIES, rng.randint(2, 3)))


def _small_talk(rng: random.Random) -> str:
    template = rng.choice(TOPICAL if rng.random() < 0.5 else SMALL_TALK)
    return template.format(
        t=rng.choice(TOPICS),
        n=rng.choice(NAMES),
        c=rng.choice(CITIES + COUNTRIES),
        k=rng.randint(2, 12000),
        r=rng.choice(RELATIVES),
        a=rng.choice(list(ANIMALS.values()) + list(ANIMALS)),
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
    sessions: int = 300,
    seed: int = 7,
    *,
    per_turns: int = 25,
    min_gap: int = 120,
    overlap: float = 0.4,
) -> LongConversation:
    """A conversation of ``sessions`` sessions, one question per ``per_turns`` turns.

    ``overlap`` is the share of questions asked with the variant that shares one word with
    the fact (the others share none).
    """
    rng = random.Random(seed)
    stamps = _timestamps(rng, sessions)
    n = len(stamps)
    users: list[str | None] = [None] * n
    used: set[str] = set()
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    questions: list[Question] = []
    for _ in range(n // per_turns):
        kind = rng.choices(kinds, weights)[0]
        plan = _plan(rng, used, kind, overlap) or _plan(rng, used, "distractor", overlap)
        if plan is None:
            continue
        slots = _place(rng, users, len(plan.statements), n - min_gap, GAPS.get(plan.kind))
        if slots is None:
            continue
        for slot, text in zip(slots, plan.statements, strict=True):
            users[slot] = _wrap(rng, text)
        evidence = tuple(slots[i] for i in plan.evidence)
        after = rng.randint(max(slots) + min_gap, n)
        for text in plan.distractors:
            if (slot := _free(rng, users, after - 1)) is not None:
                users[slot] = _wrap(rng, text)
        facts = tuple(plan.statements[i] for i in plan.evidence)
        questions.append(Question(after, plan.question, plan.kind, evidence, facts))
    turns = [
        Turn(text, _reply(rng, text), at)
        for text, at in zip((u or _small_talk(rng) for u in users), stamps, strict=True)
    ]
    told = "\n".join(t.user for t in turns)
    questions = [q for q in questions if _answerable(q, turns, told)]
    questions.sort(key=lambda q: q.after)
    return LongConversation(turns, questions, seed)


def _answerable(q: Question, turns: list[Turn], told: str) -> bool:
    """Each fact sentence is in its evidence turn and in no other turn (``told`` joins them)."""
    pairs = zip(q.facts, q.evidence, strict=True)
    return all(told.count(f) == 1 and f in turns[e].user for f, e in pairs)


def _place(
    rng: random.Random,
    users: list[str | None],
    k: int,
    end: int,
    gaps: tuple[int, int] | None,
) -> list[int] | None:
    """k free turn slots, in order, ``gaps`` apart, before ``end``."""
    lo, hi = gaps or (0, 0)
    for _ in range(50):
        slots = [rng.randrange(0, max(1, end - hi * (k - 1)))]
        for _ in range(k - 1):
            slots.append(slots[-1] + rng.randint(lo, hi))
        if slots[-1] < end and all(users[s] is None for s in slots):
            return slots
    return None


def _free(rng: random.Random, users: list[str | None], end: int) -> int | None:
    """A random free turn slot before ``end``, or None."""
    for _ in range(30):
        slot = rng.randrange(0, max(1, end))
        if users[slot] is None:
            return slot
    return None
