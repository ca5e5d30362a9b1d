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
    from bench._recall_ablations import register

    register()  # the abl:* variants of recall-local
    texts, asked = memory_script(turns)
    weights, _, option = weights.partition("+")  # "q8_0+nosplice": splicing off
    backend = LlamaCppBackend(weights=weights, splice_bytes=0 if option == "nosplice" else None)
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


def bench_weights(prompts: int = 40) -> dict[str, Any]:
    """Each format in its own process (memory and load time are per process), then agreement."""
    out: dict[str, Any] = {}
    for fmt in FORMATS:
        print(f"  (f) {fmt} ...", flush=True)
        LlamaCppBackend(weights=fmt).token_counter()  # converted (and timed) outside the probe
        run = subprocess.run(
            [sys.executable, "-c", _PROBE, fmt], capture_output=True, text=True, check=True
        )
        out[fmt] = json.loads(run.stdout.strip().splitlines()[-1])
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


# -- report ------------------------------------------------------------------------------------
def weights_section(data: dict[str, Any]) -> str:
    w = data["weights"]
    rows = [
        "| weights | file | load | resident | 35 tok after 1,000 | 512 from empty | decode "
        "| agreement (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt in FORMATS:
        r = w[fmt]
        label = {"original": "Q4_1 (as shipped)", "q8_0": "Q8_0 [default]", "f16": "F16"}[fmt]
        rows.append(
            f"| {label} | {r['file_bytes'] / 2**20:.0f} MiB | {r['load_s']:.2f} s "
            f"| {_rss(r) / 2**20:.0f} MiB | {1000 * r['read35_after1000_s']:.0f} ms "
            f"| {r['read512_s']:.2f} s ({512 / r['read512_s']:.0f} tok/s) "
            f"| {r['decode_tok_s']:.1f} tok/s | {r['agreement']:.3f} "
            f"({r.get('agreement_min', 1.0):.2f}) |"
        )
    base, q8 = w["original"], w["q8_0"]
    return f"""### (f) Weight formats

The shipped Q4_1 file converted once with llama.cpp's quantizer (`llama_model_quantize`,
`allow_requantize`; {q8["convert_s"]:.1f} s for Q8_0, cached in `$MEMCHAT_MODEL_CACHE`), each
format measured in its own process (n_threads 2, n_ubatch 512, median of 3; resident = the
process's RSS after loading and the reads, n_ctx 8192). Agreement: the
share of 16 teacher-forced greedy tokens equal to the original's, mean over {w["prompts"]}
scripted prompts (min in brackets).

{chr(10).join(rows)}

Q8_0 reads a 512-token block {base["read512_s"] / q8["read512_s"]:.2f}x as fast as Q4_1 and a
35-token turn {base["read35_after1000_s"] / q8["read35_after1000_s"]:.2f}x, for
{(_rss(q8) - _rss(base)) / 2**20:.0f} MiB more resident memory; it is the default
(`weights = "auto"`; `original` keeps the shipped file). n_ubatch 64 was slower for every
format here (measured in a scratch run: 512-token reads 15-25 % slower).{_peak_note(w)}
"""


def _peak_note(w: dict[str, Any]) -> str:
    if all("rss_bytes" in w[f] for f in FORMATS):
        return ""
    return (
        "\n\nThis run recorded only the peak RSS, which for Q8_0 and F16 includes a conversion "
        "made in the probe's process; measured separately after loading: Q4_1 335 MiB, Q8_0 "
        "380 MiB (+45 MiB, the larger file)."
    )


def _rss(row: dict[str, Any]) -> float:
    """Resident memory after the reads; a run before it was recorded has only the peak."""
    return float(row.get("rss_bytes", row["max_rss_bytes"]))


def memory_section(data: dict[str, Any]) -> str:
    arms = data["memory"]
    any_arm = next(iter(arms.values()))
    rows = [
        "| weights + strategy | evidence in context | TTFT median | p90 | max "
        "| question turns (median) | other turns | tokens read (median / p90) "
        "| read on question turns | turns that recalled | after-turn work (median) "
        "| spliced pieces held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in arms.items():
        upkeep = f"{r['upkeep_median']:.2f} s" if "upkeep_median" in r else ""
        held = f"{r['piece_bytes'] / 2**20:.0f} MiB" if r.get("piece_bytes") else ""
        rows.append(
            f"| {name} | {r['evidence_in_context']:.2f} | {r['ttft_median']:.2f} s "
            f"| {r['ttft_p90']:.2f} s | {r['ttft_max']:.2f} s | {r['question_ttft_median']:.2f} s "
            f"| {r['other_ttft_median']:.2f} s | {r['read_median']:.0f} / {r['read_p90']:.0f} "
            f"| {r['question_read_median']:.0f} | {r.get('recalled_turns', '')} | {upkeep} "
            f"| {held} |"
        )
    section = f"""### (g) Long memory on the embedded model (generated chat)

{any_arm["turns"]} scripted turns at a {BUDGET.window:,}-token budget, replies of at most
{REPLY.max_tokens} tokens; 25 personal facts told in passing early on, and {any_arm["questions"]}
turns (a quarter) asking about one of them, in other words, at least {GAP} turns after it was
told. "Evidence in context": the fact's message was in what the model read (in the window or
recalled). Every turn is counted in the time to first token. "Tokens read" counts what the
model evaluated: spliced tokens are not read. "After-turn work" is `session.upkeep()`, which
every face runs once the reply has been sent, while the user reads it (indexing the round;
with splicing, reading the round's lines and the reply's end ahead); it is not in the time to
first token. `+nosplice`: `splice_bytes=0` (`MEMCHAT_KV_SPLICE_MB=0`). Generated data, written
for this benchmark; the real-chat recall numbers are in the recall section.

{_run_line(data.get("memory_run"))}{chr(10).join(rows)}
{_targets(arms)}"""
    if "splice_fidelity" in data:
        section += "\n" + splice_fidelity_section(data["splice_fidelity"])
    return section


DEFAULT_ARM = "q8_0 + recall-local"  # the embedded default: converted weights, recall-local
ANCHOR_ARM = "q8_0 + cache"  # no long memory
TTFT_MEDIAN, TTFT_P90 = 0.3, 0.6  # issue 13's targets for the default with long memory on


def _run_line(run: dict[str, Any] | None) -> str:
    if not run:
        return ""
    return f"Run {run['date']} at {run['commit']} (load average {run['load']} at its start).\n\n"


def _targets(arms: dict[str, Any]) -> str:
    """Issue 13's targets, for the default arm, against the no-memory anchor of the same run."""
    row, anchor = arms.get(DEFAULT_ARM), arms.get(ANCHOR_ARM)
    if row is None:
        return ""
    verdict = lambda value, target: "met" if value <= target else "missed"  # noqa: E731
    versus = ""
    if anchor is not None:
        times = row["ttft_median"] / anchor["ttft_median"]
        versus = f"; {times:.2f}x the median of `{ANCHOR_ARM}`, which recalls nothing"
    return (
        f"\nTargets (issue 13) for the embedded default with long memory on (`{DEFAULT_ARM}`): "
        f"median TTFT ≤ {TTFT_MEDIAN} s: {row['ttft_median']:.2f} s, **"
        f"{verdict(row['ttft_median'], TTFT_MEDIAN)}**; p90 ≤ {TTFT_P90} s: "
        f"{row['ttft_p90']:.2f} s, **{verdict(row['ttft_p90'], TTFT_P90)}**{versus}; "
        f"evidence in context {row['evidence_in_context']:.2f}.\n"
    )


def splice_fidelity_section(fid: dict[str, Any]) -> str:
    return f"""### (h) Splice fidelity

A spliced line attended, when it was read ahead, only to the template's system opening and the
recall block's header, not to the conversation before it, so a spliced prompt is not
bit-identical to a fresh read. {fid["cases"]} prompts (system prompt, a round, a recall block of
12 lines over two days, of which 6 facts of (g), then a question about one of them;
{fid["spliced_share"]:.0%} of each prompt spliced): teacher-forced agreement of the next 16
greedy tokens with a fresh read is **{fid["spliced_agreement"]:.2f}** spliced (min
{fid["spliced_min"]:.2f}), against {fid["split_agreement"]:.2f} for the same prompt read fresh in
the same two pieces (noise floor). Turn splicing off (`MEMCHAT_KV_SPLICE_MB=0`,
`kv_splice_mb = 0`) when every answer must equal a fresh read.
"""
