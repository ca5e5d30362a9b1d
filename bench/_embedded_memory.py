"""(f) weight formats and (g) long memory on the embedded model, for bench/bench_embedded.py.

(f) Each weight format of the shipped model (Q4_1 as shipped, Q8_0 and F16 converted): load
    time, resident memory, reading 35 tokens after 1,000 and 512 from empty, decode speed, and
    teacher-forced greedy agreement with the original (16 tokens on 40 scripted prompts).
(g) A 200-turn scripted chat at a 2,000-token budget in which 25 personal facts are told early
    and a quarter of the turns (50) ask about one of them >= 50 turns later, in other words:
    time to first token (every turn), tokens read per turn, and whether the fact's message was
    in the context the model read, per weights x strategy. Generated data, written for this.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import median, percentile
from bench._embedded_fidelity import argmaxes
from bench._embedded_setup import BUDGET, REPLY, SYSTEM, user_messages
from memchat import ChatSession, Message
from memchat.backends._llama_convert import _quantize
from memchat.backends.llama_cpp import LlamaCppBackend
from memchat.strategies import make_strategy

FORMATS = ("original", "q8_0", "f16")
MEMORY_TURNS = 200
GAP = 50  # a question comes at least this many turns after its fact

# (fact told in passing, two questions that paraphrase it)
FACTS = [
    ("By the way, my sister Ana moved to Porto last spring and teaches chemistry there.",
     "Which city did my sister end up moving to?", "What subject does Ana teach?"),
    ("My dentist appointment got moved to the 14th, a Thursday, at nine in the morning.",
     "When am I seeing the dentist now?", "What time is my appointment with the dentist?"),
    ("I finally named the new puppy Biscuit; he is a beagle with one brown ear.",
     "What did I call my dog?", "What breed is my puppy?"),
    ("Our team offsite is in Tallinn this year, the week after Easter.",
     "Where is the work trip going to be held?", "When is the offsite happening?"),
    ("I am allergic to hazelnuts, so I always check chocolate labels twice.",
     "Which nut can I not eat?", "Why do I read the labels on chocolate so carefully?"),
    ("My grandmother's recipe for plum dumplings uses cottage cheese in the dough.",
     "What is in the dough of grandma's dumplings?", "Which fruit goes in grandma's dumplings?"),
    ("I switched my commute to the 7:42 tram because the bus kept being late.",
     "How do I get to work these days?", "Which departure do I catch in the morning?"),
    ("The blue bike in the garage belongs to my neighbour Tomasz, not to me.",
     "Whose bicycle is the blue one?", "What is my neighbour's name?"),
    ("I ran my first half marathon in 2 hours 11 minutes, in the rain.",
     "How long did my first half marathon take?", "What was the weather like during my race?"),
    ("My favourite author is Ursula K. Le Guin; I reread The Dispossessed every winter.",
     "Which writer do I like best?", "Which book do I read again each winter?"),
    ("We painted the kitchen a pale sage green over the long weekend.",
     "What colour are the kitchen walls now?", "Which room did we repaint?"),
    ("My laptop is a seven-year-old ThinkPad with a replaced battery.",
     "What computer do I use?", "How old is my laptop?"),
    ("My brother Luis works night shifts as a paramedic in Valencia.",
     "What is my brother's job?", "In which city does Luis work?"),
    ("I keep my spare house key with Mrs Okafor on the second floor.",
     "Who has the extra key to my flat?", "On which floor does the person with my key live?"),
    ("The violin I play was built in 1923 in Mittenwald.",
     "Where was my instrument made?", "How old is my violin?"),
    ("I planted three apricot trees along the south fence in March.",
     "What fruit trees did I put in?", "Where in the garden are the new trees?"),
    ("My daughter's school play is on the 3rd of June; she is playing the fox.",
     "Which role does my daughter have in the play?", "On what date is the school play?"),
    ("I gave up coffee in January and now drink rooibos in the mornings.",
     "What do I drink at breakfast these days?", "When did I stop drinking coffee?"),
    ("The leak under the sink was a cracked washer; the plumber charged 80 euros.",
     "What caused the leak in the kitchen?", "How much did the plumber cost?"),
    ("My best friend from school, Priya, now designs bridges in Singapore.",
     "What does Priya do for a living?", "Where does my old school friend live now?"),
    ("I am learning Portuguese with a tutor every Tuesday evening.",
     "Which language am I studying?", "On which day do I have my lessons?"),
    ("My car is a 2011 Skoda estate that my uncle sold me cheaply.",
     "What car do I drive?", "Who did I buy my car from?"),
    ("My wedding anniversary is the 9th of September; we married on a ferry.",
     "When is my anniversary?", "Where did our wedding take place?"),
    ("The cat Miso only eats the salmon pate, never the chicken one.",
     "Which flavour of food will my cat eat?", "What does Miso refuse to eat?"),
    ("I volunteer at the food bank on the first Saturday of each month.",
     "How often do I help at the food bank?", "Where do I volunteer?"),
]  # fmt: skip


def memory_script(turns: int = MEMORY_TURNS) -> tuple[list[str], dict[int, int]]:
    """The user turns, and for each question turn the index of the turn that told its fact.

    Facts are told every 4th turn from turn 2; from turn GAP + 2 on, the other even turns (and
    once every fact is told, all even turns) ask one of the two paraphrases of a fact told at
    least GAP turns before, until a quarter of the turns have asked.
    """
    texts = user_messages(turns, seed=3)
    told: list[tuple[int, int]] = []  # (turn, fact)
    asked: dict[int, int] = {}
    pending: list[tuple[int, int, int]] = []  # (turn told, fact, paraphrase)
    fact = 0
    for i in range(turns):
        if i % 4 == 2 and fact < len(FACTS):
            texts[i] = FACTS[fact][0]
            told.append((i, fact))
            pending += [(i, fact, 1), (i, fact, 2)]
            fact += 1
        elif i % 2 == 0 and i >= GAP + 2 and len(asked) < turns // 4:
            ready = [p for p in pending if i - p[0] >= GAP]
            if ready:
                pick = ready[(i // 4) % len(ready)]
                pending.remove(pick)
                texts[i] = FACTS[pick[1]][pick[2]]
                asked[i] = pick[0]
    return texts, asked


def run_memory_chat(weights: str, strategy: str, turns: int = MEMORY_TURNS) -> dict[str, Any]:
    """One arm of (g). ``weights`` may end in ``+nosplice`` (KV splicing off) or ``+nomove``
    (spliced pieces and shifted runs moved by llama.cpp's K-shift instead of in numpy)."""
    weights, _, option = weights.partition("+")
    backend = LlamaCppBackend(weights=weights, splice_bytes=0 if option == "nosplice" else None)
    pieces = backend._model().pieces  # the process's one model: its mover is put back after
    mover = pieces.mover
    if option == "nomove":
        pieces.mover = None
    try:
        return _memory_chat(backend, weights, strategy, turns)
    finally:
        pieces.mover = mover


def _memory_chat(
    backend: LlamaCppBackend, weights: str, strategy: str, turns: int
) -> dict[str, Any]:
    from bench._recall_ablations import register

    register()  # the abl:* variants of recall-local
    texts, asked = memory_script(turns)
    backend.clear_cache()
    before = backend.cache_stats()
    session = ChatSession(
        backend,
        strategy=make_strategy(strategy),
        budget=BUDGET,
        system_prompt=SYSTEM,
        params=REPLY,
        conversation_id=f"memory-{weights}-{strategy}",
    )
    ttft, reads, found, q_ttft, other_ttft, recalled = [], [], [], [], [], 0
    idle: list[float] = []
    rates: list[float] = []
    for i, text in enumerate(texts):
        start = time.perf_counter()
        first, n = None, 0
        for _ in session.send(text):
            first, n = first or time.perf_counter(), n + 1
        t = (first or time.perf_counter()) - start
        if first is not None and n > 4:
            rates.append((n - 1) / (time.perf_counter() - first))  # chunks ~ tokens
        ctx, usage = session.last_context, session.last_usage
        assert ctx is not None and usage is not None
        prompt = backend.prompt_tokens(ctx.messages)
        reads.append(len(prompt) - usage.cached_tokens)  # spliced tokens count as cached
        start = time.perf_counter()
        session.upkeep()  # what every face runs after the reply, while the user reads it
        idle.append(time.perf_counter() - start)
        ttft.append(t)
        recalled += bool(ctx.recalled)
        if i in asked:
            fact = texts[asked[i]]
            found.append(any(fact in m.content for m in ctx.messages[:-1]))
            q_ttft.append(t)
        else:
            other_ttft.append(t)
    stats = backend.cache_stats()
    backend.clear_cache()
    return {
        "decode_rate_median": median(rates),
        "upkeep_median": median(idle),
        "upkeep_p90": percentile(idle, 0.9),
        "spliced_tokens": stats.spliced_tokens - before.spliced_tokens,
        "pieces_made": stats.pieces_made - before.pieces_made,
        "piece_bytes": stats.piece_bytes,
        "turns": len(texts),
        "questions": len(asked),
        "evidence_in_context": float(np.mean(found)) if found else 0.0,
        "ttft_median": median(ttft),
        "ttft_p90": percentile(ttft, 0.9),
        "ttft_max": max(ttft),
        "question_ttft_median": median(q_ttft),
        "other_ttft_median": median(other_ttft),
        "read_median": median(reads),
        "read_p90": percentile(reads, 0.9),
        "question_read_median": median([reads[i] for i in asked]),
        "recalled_turns": recalled,
    }


def bench_memory(arms: list[tuple[str, str]], turns: int = MEMORY_TURNS) -> dict[str, Any]:
    out = {}
    for weights, strategy in arms:
        print(f"  (g) {weights} + {strategy} ...", flush=True)
        out[f"{weights} + {strategy}"] = run_memory_chat(weights, strategy, turns)
    return out


# -- (f) weight formats ------------------------------------------------------------------------
_PROBE = r"""
import json, os, resource, statistics, sys, time
import numpy as np
from memchat.backends.llama_cpp import LlamaCppBackend
weights = sys.argv[1]
backend = LlamaCppBackend(weights=weights)
start = time.perf_counter()
llama = backend._model().llama
load = time.perf_counter() - start
words = ("the quick brown fox jumps over the lazy dog and then " * 400).encode()
toks = llama.tokenize(words, add_bos=False)
def after(n_base, n_new):
    llama.reset(); llama.eval(toks[:n_base])
    t = time.perf_counter(); llama.eval(toks[n_base:n_base + n_new])
    return time.perf_counter() - t
r35 = statistics.median(after(1000, 35) for _ in range(3))
r512 = statistics.median(after(0, 512) for _ in range(3))
llama.reset(); llama.eval(toks[:200])
t = time.perf_counter()
for _ in range(64):
    logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama._n_vocab,))
    llama.eval([int(np.argmax(logits))])
decode = 64 / (time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open("/proc/self/status") as f:
    now = int(f.read().split("VmRSS:")[1].split()[0]) * 1024
size = os.path.getsize(backend.weights_path)
print(json.dumps({"load_s": load, "read35_after1000_s": r35, "read512_s": r512,
                  "decode_tok_s": decode, "max_rss_bytes": rss, "rss_bytes": now,
                  "file_bytes": size}))
"""


PROBES = 3  # processes per format; each figure is their median (one load measured 0.24 s
# alone and 0.70 s in the next process, right after this one had loaded the model)


def bench_weights(prompts: int = 40) -> dict[str, Any]:
    """Each format in its own processes (memory and load time are per process), then agreement."""
    out: dict[str, Any] = {}
    for fmt in FORMATS:
        print(f"  (f) {fmt} ...", flush=True)
        LlamaCppBackend(weights=fmt).token_counter()  # converted (and timed) outside the probe
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", _PROBE, fmt], capture_output=True, text=True, check=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(PROBES)
        ]
        out[fmt] = {key: median([run[key] for run in runs]) for key in runs[0]}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        backend = LlamaCppBackend()
        _quantize(backend.model_path, Path(tmp) / "q8.gguf", "q8_0", backend.n_threads)
    out["q8_0"]["convert_s"] = time.perf_counter() - start
    reference = LlamaCppBackend(weights="original")
    texts = user_messages(prompts, seed=9)
    for fmt in FORMATS[1:]:
        other = LlamaCppBackend(weights=fmt)
        scores = []
        for text in texts:
            tokens = reference.prompt_tokens([Message("system", SYSTEM), Message("user", text)])
            ref = _greedy(reference, tokens.tolist(), None)
            got = _greedy(other, tokens.tolist(), ref)
            scores.append(float(np.mean(np.array(got) == np.array(ref))))
        out[fmt]["agreement"] = float(np.mean(scores))
        out[fmt]["agreement_min"] = float(np.min(scores))
        other.clear_cache()
    reference.clear_cache()
    out["original"]["agreement"] = 1.0
    out["prompts"] = prompts
    return out


def _greedy(backend: LlamaCppBackend, prompt: list[int], forced: list[int] | None) -> list[int]:
    """Greedy next tokens after ``prompt`` for 16 steps, fed ``forced`` when given."""
    llama = backend._model().llama
    llama.reset()
    llama.eval(prompt)
    return argmaxes(llama, forced)
