"""bench_server's table, targets (met / missed, with the numbers) and Markdown section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ISSUE_REFERENCE = (
    "LiteLLM 1.108.7 with one worker serves 24–33 streamed requests/s and adds ~10 ms TTFB at "
    "C=1 and ~1 s at C=50"
)


HEADERS = ["C", "path", "TTFB p50 ms", "TTFB p99 ms", "added TTFB p50", "added TTFB p99",
           "total p50 ms", "total p99 ms", "req/s", "server CPU ms/req", "client CPU ms/req",
           "errors / n"]  # fmt: skip
LONG_HEADERS = ["path", "TTFB p50 ms", "added TTFB p50", "total p50 ms", "added total p50",
                "server CPU ms/req", "errors / n"]  # fmt: skip


def long_table(long: dict[str, dict]) -> tuple[list, list[dict]]:
    """Rows and cells of the long-history runs (C=1), "added" against direct's."""
    d = long["direct"]
    rows, cells = [], []
    for name, s in long.items():
        added_ttfb = s["ttfb_p50_ms"] - d["ttfb_p50_ms"]
        added_total = s["total_p50_ms"] - d["total_p50_ms"]
        cells.append({"path": name, "concurrency": 1, **s, "added_ttfb_p50_ms": added_ttfb,
                      "added_total_p50_ms": added_total})  # fmt: skip
        anchor = name == "direct"
        rows.append([name, s["ttfb_p50_ms"], "anchor" if anchor else added_ttfb,
                     s["total_p50_ms"], "anchor" if anchor else added_total,
                     s["server_cpu_ms_per_request"], _errors(s)])  # fmt: skip
    return rows, cells


def _added(results: dict, name: str, c: int, key: str) -> float:
    return float(results[(name, c)][key] - results[("direct", c)][key])


def rows_and_targets(results: dict, names: Sequence[str], concurrency: Sequence[int],
                     store: dict[str, float]) -> tuple[list, list[dict], list[dict]]:  # fmt: skip
    rows, cells = [], []
    for c in concurrency:
        for name in names:
            s = results[(name, c)]
            added = {
                "added_ttfb_p50_ms": _added(results, name, c, "ttfb_p50_ms"),
                "added_ttfb_p99_ms": _added(results, name, c, "ttfb_p99_ms"),
                "added_total_p50_ms": _added(results, name, c, "total_p50_ms"),
            }
            cells.append({"path": name, "concurrency": c, **s, **added})
            anchor = name == "direct"
            rows.append([
                c, name, s["ttfb_p50_ms"], s["ttfb_p99_ms"],
                "anchor" if anchor else added["added_ttfb_p50_ms"],
                "anchor" if anchor else added["added_ttfb_p99_ms"],
                s["total_p50_ms"], s["total_p99_ms"], s["throughput_rps"],
                s["server_cpu_ms_per_request"], s["client_cpu_ms_per_request"], _errors(s),
            ])  # fmt: skip
    return rows, _targets(results, names, store), cells


def _errors(s: dict[str, Any]) -> str:
    busy = f" (+{s['busy_409_retried']} 409)" if s["busy_409_retried"] else ""
    return f"{s['errors']} / {s['requests']}{busy}"


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _target(what: str, value: float | None, limit: float, unit: str, detail: str,
            at_least: bool = False) -> dict[str, Any]:  # fmt: skip
    if value is None:
        met, verdict = None, "not measured"
    else:
        met = value >= limit if at_least else value <= limit
        verdict = "met" if met else "missed"
    sign = "≥" if at_least else "≤"
    shown = "—" if value is None else f"{_num(value)}{unit}"
    line = f"- {what} {sign} {_num(limit)}{unit}: **{shown}** — **{verdict}** ({detail})"
    return {"target": what, "limit": limit, "value": value, "met": met, "line": line}


def _targets(results: dict, names: Sequence[str], store: dict[str, float]) -> list[dict]:
    out = []
    d1, m1 = results[("direct", 1)], results[("memchat", 1)]
    out.append(
        _target(
            "added TTFB p50 at C=1, stateless",
            _added(results, "memchat", 1, "ttfb_p50_ms"),
            2,
            " ms",
            f"memchat {m1['ttfb_p50_ms']:.2f} ms vs direct {d1['ttfb_p50_ms']:.2f} ms",
        )
    )
    d50, m50 = results[("direct", 50)], results[("memchat", 50)]
    out.append(
        _target(
            "added TTFB p99 at C=50, stateless",
            _added(results, "memchat", 50, "ttfb_p99_ms"),
            20,
            " ms",
            f"memchat {m50['ttfb_p99_ms']:,.0f} ms vs direct {d50['ttfb_p99_ms']:,.0f} ms",
        )
    )
    trip = store["round_trip_p50_ms"]
    for name, label in (("memchat stateful", "default strategy (recall)"),
                        ("memchat stateful, cache", "--strategy cache")):  # fmt: skip
        s1 = results[(name, 1)]
        extra_total = s1["total_p50_ms"] - m1["total_p50_ms"]
        extra_ttfb = s1["ttfb_p50_ms"] - m1["ttfb_p50_ms"]
        out.append(
            _target(
                f"stateful, {label}, C=1: total p50 over stateless",
                extra_total,
                trip,
                " ms",
                f"the store's round trip (find + append of one round, SQLite) p50 {trip:.2f} ms; "
                f"TTFB p50 over stateless {extra_ttfb:+.2f} ms",
            )
        )
    if "LiteLLM" in names:
        lite = results[("LiteLLM", 50)]["throughput_rps"]
        ratio: float | None = m50["throughput_rps"] / lite
        detail = f"memchat {m50['throughput_rps']:.0f} req/s vs LiteLLM {lite:.1f} req/s"
    else:
        ratio, detail = None, "LiteLLM not installed"
    what = "throughput at C=50, stateless, × LiteLLM's"
    out.append(_target(what, ratio, 10, "×", detail, at_least=True))
    return out


def _reading(cells: list[dict]) -> str:
    """What the CPU columns say: each proxy's CPU per request at C=50 and the ceiling it sets."""
    at = {c["path"]: c for c in cells if c["concurrency"] == 50}
    parts = []
    for name in ("memchat", "memchat stateful", "memchat stateful, cache", "LiteLLM"):
        if name in at and at[name]["server_cpu_ms_per_request"] > 0:
            cpu = at[name]["server_cpu_ms_per_request"]
            parts.append(f"{name} {cpu:.1f} ms (≤ {1000 / cpu:.0f} req/s per core)")
    direct = at["direct"]
    return (
        "CPU per request at C=50: " + ", ".join(parts) + ". memchat serves from one process, "
        "and its request path is Python under one GIL, so that ceiling is one core's. The "
        f"direct path at C=50 ({direct['throughput_rps']:.0f} req/s) is bounded by the client "
        f"and the upstream sharing the same 2 cores (client CPU "
        f"{direct['client_cpu_ms_per_request']:.1f} ms per request there)."
    )


def markdown(tables: tuple[str, str], targets: list[dict], cells: list[dict],
             store: dict[str, Any], notes: dict[str, Any]) -> str:  # fmt: skip
    out, out_long = tables
    lines = "\n".join(t["line"] for t in targets)
    before = " / ".join(f"{x:.2f}" for x in notes["load_before"])
    after = " / ".join(f"{x:.2f}" for x in notes["load_after"])
    trips = " and ".join(f"{x:.2f}" for x in store["run_p50_ms"])
    n = ", ".join(f"{v} at C={c}" for c, v in notes["requests"].items())
    delay = notes["chunk_delay_ms"]
    pace = "no artificial delay" if not delay else f"{delay:g} ms after each event"
    quick = " **(quick smoke run: too few requests for p99)**" if notes["quick"] else ""
    long = notes["long_history"]
    parts = notes.get("uvicorn", "asyncio + h11")
    return f"""## HTTP server: added latency and throughput, vs direct and LiteLLM

`python bench/bench_server.py` · {notes["machine"]} · memchat {notes["memchat_commit"]} ·
{notes["litellm"]} · {notes["seconds"]} s.{quick}

**What was measured.** Streamed chat completions through `memchat serve --backend openai
--base-url <fake upstream>`, through LiteLLM's proxy in front of the same upstream, and from
the upstream directly, in the same run, at 1 / 10 / 50 concurrent clients. The fake upstream
(`bench/_server_upstream.py`, stdlib asyncio, its own process) streams a role chunk, 20
one-word content chunks, a finish chunk and `[DONE]`, each its own SSE event and write:
{pace}. memchat (one uvicorn process, default flags, {parts}, SQLite store in a temporary
MEMCHAT_HOME) and LiteLLM (one worker, a config.yaml mapping `bench-model` to
`openai/bench-model` at the upstream, no master key, no database) run in their own
processes. The client (httpx async, at most C kept-alive connections, a warm-up of 2 requests
per client) runs in the benchmark's process; requests per path: {n}, in {notes["rounds"]}
interleaved round(s) of every path. **TTFB** = request sent to the first chunk with content;
**total** = to the end of the body; **added** = the path minus direct at the same C;
**server CPU** = CPU time of the answering process (memchat, LiteLLM, or the upstream for
direct) per request, **client CPU** the benchmark's own.
Stateless paths send a two-message history. **Stateful** = each client on its own
conversation (`X-Memchat-Conversation`), sending only the new message, a new conversation
every 10 turns (so histories are as long at every C), with the default strategy (recall: a
BM25 + MiniLM index of past rounds) and with `--strategy cache`. An error is anything but a
200 whose chunks join to the exact reply; a 409 `conversation_busy` is sent again after 2 ms
(as docs/server.md tells clients), timed from the first try, and counted as "+N 409".

{out}

{_reading(cells)}

**Long history** (C=1, stateless, every request carrying {long["rounds"]} earlier rounds, as a
stateful conversation that long sends upstream; {long["requests"]} requests per path; memchat
with its default strategy and with `--strategy cache`):

{out_long}

**Targets (issue 12):**

{lines}

**Store round trip** (in the benchmark's process, same filesystem, SQLite WAL + synchronous
FULL as memchat opens it; half the turns before the load, half after): find the conversation
+ append one round. p50 {store["round_trip_p50_ms"]:.2f} ms, p99 {store["round_trip_p99_ms"]:.2f} ms
over {store["samples"]} turns; append alone p50 {store["append_p50_ms"]:.2f} ms, find
{store["find_p50_ms"]:.3f} ms; p50 before / after: {trips} ms.

**Reference from the issue** (same machine, earlier): {ISSUE_REFERENCE}.

**Noise.** 2 cores, shared with other benchmarks during the run. Load average (1/5/15 min)
before: {before}; after: {after}. The client, the proxy and the upstream compete for the
same 2 cores, so absolute numbers move between runs; the ratios and "added" columns compare
paths measured in the same run, interleaved.
"""
