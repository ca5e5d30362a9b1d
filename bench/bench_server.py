"""Benchmark: what `memchat serve` adds to a streamed chat completion, vs LiteLLM (issue 12).

Three processes besides this one (no shared GIL): a fast fake OpenAI-compatible upstream
(``_server_upstream.py``: a role chunk, 20 one-word content chunks, a finish chunk, ``[DONE]``,
each its own SSE event and write, no artificial delay), ``memchat serve --backend openai
--base-url <upstream>`` with a temporary MEMCHAT_HOME (a second one with ``--strategy cache``),
and LiteLLM's proxy (its own venv, one worker, a minimal config.yaml) in front of the same
upstream. The client (``_server_load.py``, httpx async, streaming) runs here, at 1 / 10 / 50
concurrent clients, on every path in the same run, the paths interleaved in rounds:

- direct: the upstream itself (the anchor: "added" = this path minus direct, same C);
- memchat, stateless: the client sends a two-message history;
- memchat, stateful: each client on its own conversation (``X-Memchat-Conversation``), sending
  only the new message; with the default strategy (recall) and with ``--strategy cache``;
- LiteLLM, stateless (it keeps no chat-completions conversations).

Then the stateless paths once more at C=1 with a 100-round history in every request (what a
stateful conversation that long sends upstream). The SQLite store's round trip
(``find_conversation`` + ``append`` of one round, the store calls of a stateful turn) is timed
in this process on the same filesystem. The LiteLLM arm is skipped, with a note, when its venv
is absent (``--litellm-venv`` or $MEMCHAT_BENCH_LITELLM_VENV, default /work/litellm-venv).
``--memchat-commit REV`` serves a clean copy of that commit's src/ instead of the working tree
(for a checkout that others are editing while it runs).

    python bench/bench_server.py [--quick] [--litellm-venv DIR] [--chunk-delay-ms MS]
                                 [--memchat-commit REV]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _server_procs as procs  # noqa: E402
from bench._common import ROOT, head, machine, percentile, table, write_results  # noqa: E402
from bench._server_load import Cell, Conversations, Target, run_cell  # noqa: E402
from bench._server_report import (  # noqa: E402
    HEADERS,
    LONG_HEADERS,
    long_table,
    markdown,
    rows_and_targets,
)
from memchat.core.messages import Message  # noqa: E402
from memchat.storage import SQLiteStore  # noqa: E402

CONCURRENCY = (1, 10, 50)
REQUESTS = {1: 100, 10: 200, 50: 400}
QUICK_REQUESTS = {1: 10, 10: 20, 50: 50}
LONG_HISTORY = 100  # rounds sent by the stateless client in the long-history cells
LONG_REQUESTS, QUICK_LONG_REQUESTS = 20, 4


def store_round_trip(folder: Path, n: int) -> dict[str, list[float]]:
    """Seconds of a stateful turn's store calls on a fresh SQLite file (WAL, synchronous FULL,
    as memchat opens it), ``n`` times: find the conversation, append one round."""
    store = SQLiteStore(folder / f"roundtrip-{time.monotonic_ns()}.db")
    finds, appends = [], []
    try:
        cid = store.create_conversation("bench", owner="").id
        for i in range(n):
            t0 = time.perf_counter()
            store.find_conversation(cid, owner="")
            t1 = time.perf_counter()
            store.append(cid, [Message("user", f"question {i}"), Message("assistant", "answer")])
            finds.append(t1 - t0)
            appends.append(time.perf_counter() - t1)
    finally:
        store.close()
    return {"find": finds, "append": appends}


def store_summary(runs: list[dict[str, list[float]]]) -> dict[str, Any]:
    """p50/p99 ms over every run's samples, and each run's round-trip p50."""
    finds = [x for r in runs for x in r["find"]]
    appends = [x for r in runs for x in r["append"]]
    both = [a + b for a, b in zip(finds, appends, strict=True)]
    per_run = [percentile([a + b for a, b in zip(r["find"], r["append"], strict=True)], 0.5)
               for r in runs]  # fmt: skip
    return {
        "find_p50_ms": percentile(finds, 0.5) * 1e3,
        "append_p50_ms": percentile(appends, 0.5) * 1e3,
        "append_p99_ms": percentile(appends, 0.99) * 1e3,
        "round_trip_p50_ms": percentile(both, 0.5) * 1e3,
        "round_trip_p99_ms": percentile(both, 0.99) * 1e3,
        "run_p50_ms": [x * 1e3 for x in per_run],
        "samples": len(both),
    }


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)


def memchat_source(folder: Path, rev: str | None) -> tuple[str | None, str]:
    """Where the memchat servers import memchat from, and what that is.

    Without ``rev``: the working tree (the editable install), described as HEAD, plus a warning
    when src/ has uncommitted changes. With ``rev``: a clean copy of that commit's src/ taken
    with ``git archive`` (read-only; for a checkout others are editing), put on PYTHONPATH.
    """
    if rev is None:
        commit, dirty = head()
        return None, commit + (" + uncommitted changes in src/" if dirty else "")
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").stdout.decode().strip()
    archive = _git("archive", "--format=tar", commit, "src")
    if not commit or archive.returncode != 0:
        raise SystemExit(f"cannot take src/ at {rev!r}: {archive.stderr.decode().strip()}")
    dest = folder / "memchat-src"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return str(dest / "src"), f"{commit[:7]} (src/ from git archive)"


def start_servers(
    folder: Path, args: argparse.Namespace, src: str | None
) -> tuple[list[Any], list[Target], str]:
    """The servers and the targets to load, and a note on LiteLLM (version, or why absent)."""
    up = procs.upstream(folder, args.chunk_delay_ms)
    servers: list[Any] = [up]
    try:
        mc = procs.memchat(folder, up.url, "memchat", src=src)
        servers.append(mc)
        mc_cache = procs.memchat(folder, up.url, "memchat-cache", "--strategy", "cache", src=src)
        servers.append(mc_cache)
        targets = [
            Target("direct", up.url, procs.UPSTREAM_MODEL, up.proc.pid),
            Target("memchat", mc.url, "memchat", mc.proc.pid),
            Target("memchat stateful", mc.url, "memchat", mc.proc.pid, stateful=True),
            Target(
                "memchat stateful, cache", mc_cache.url, "memchat", mc_cache.proc.pid, stateful=True
            ),  # fmt: skip
        ]
        venv = procs.litellm_venv(args.litellm_venv)
        version = procs.litellm_version(venv)
        if version is None:
            note = (f"LiteLLM skipped: no LiteLLM proxy in {venv} (create it with `python3.11 -m "
                    f"venv {venv} && {venv}/bin/pip install 'litellm[proxy]'`, or set "
                    f"--litellm-venv / ${procs.LITELLM_ENV})")  # fmt: skip
        else:
            lite = procs.litellm(folder, venv, up.url)
            servers.append(lite)
            targets.append(Target("LiteLLM", lite.url, procs.UPSTREAM_MODEL, lite.proc.pid))
            note = f"LiteLLM {version} (`litellm[proxy]` from PyPI, venv {venv})"
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers, targets, note


def _run(target: Target, c: int, n: int, conversations: Conversations, label: str) -> Cell:
    cell = run_cell(target, c, n, conversations)
    s = cell.summary()
    print(f"C={c:<2} {label:<9} {target.name:<26} ttfb p50 {s['ttfb_p50_ms']:7.2f} ms  "
          f"total p50 {s['total_p50_ms']:7.2f} ms  {s['throughput_rps']:7.1f} req/s  "
          f"errors {s['errors']}  409 {s['busy_409_retried']}", flush=True)  # fmt: skip
    return cell


def measure(targets: list[Target], requests: dict[int, int], rounds: int) -> dict:
    """Every target at every C, in ``rounds`` interleaved rounds; pooled per (target, C)."""
    cells: dict[tuple[str, int], Cell] = {}
    conversations: dict[tuple[str, int], Conversations] = {}
    for c in CONCURRENCY:
        for r in range(rounds):
            for target in targets:
                key = (target.name, c)
                state = conversations.setdefault(key, Conversations())
                cell = _run(target, c, requests[c] // rounds, state, f"{r + 1}/{rounds}")
                cells.setdefault(key, Cell()).add(cell)
    return {key: cell.summary() for key, cell in cells.items()}


def measure_long(targets: list[Target], n: int, rounds: int) -> dict:
    """The stateless targets (and memchat --strategy cache, stateless) at C=1 with a
    LONG_HISTORY-round history in every request."""
    long = [replace(t, history_rounds=LONG_HISTORY) for t in targets if not t.stateful]
    cache = next(t for t in targets if t.name == "memchat stateful, cache")
    long.insert(2, replace(cache, name="memchat, cache", stateful=False,
                           history_rounds=LONG_HISTORY))  # fmt: skip
    cells: dict[str, Cell] = {}
    for r in range(rounds):
        for target in long:
            cell = _run(target, 1, n // rounds, Conversations(), f"long {r + 1}/{rounds}")
            cells.setdefault(target.name, Cell()).add(cell)
    return {name: cell.summary() for name, cell in cells.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, load them, stop them; the raw results and the run's notes."""
    requests = QUICK_REQUESTS if args.quick else REQUESTS
    rounds = args.rounds or (1 if args.quick else 2)
    samples = 50 if args.quick else 200
    load_before, started = os.getloadavg(), time.time()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)
        src, memchat_note = memchat_source(folder, args.memchat_commit)
        store_runs = [store_round_trip(folder, samples)]
        servers, targets, litellm_note = start_servers(folder, args, src)
        try:
            results = measure(targets, requests, rounds)
            n_long = QUICK_LONG_REQUESTS if args.quick else LONG_REQUESTS
            long = measure_long(targets, n_long, rounds)
        finally:
            for server in servers:
                server.stop()
        store_runs.append(store_round_trip(folder, samples))
    notes = {
        "machine": machine(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started),
        "litellm": litellm_note,
        "memchat_commit": memchat_note,
        "requests": {str(c): requests[c] for c in CONCURRENCY},
        "long_history": {"rounds": LONG_HISTORY, "requests": n_long},
        "rounds": rounds,
        "chunk_delay_ms": args.chunk_delay_ms,
        "quick": args.quick,
        "uvicorn": uvicorn_parts(),
    }
    names = [t.name for t in targets]
    return {"notes": notes, "names": names, "results": results, "long": long,
            "store_runs": store_runs}  # fmt: skip


def uvicorn_parts() -> str:
    """The event loop and HTTP parser uvicorn picks (``auto``) in the venv memchat serve runs
    from: uvloop and httptools when installed (the server extra installs them)."""
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    return f"{loop} + {'httptools' if find_spec('httptools') else 'h11'}"


def report(raw: dict[str, Any]) -> None:
    notes, store = raw["notes"], store_summary(raw["store_runs"])
    rows, targets, cells = rows_and_targets(raw["results"], raw["names"], CONCURRENCY, store)
    out = table(HEADERS, rows)
    long_rows, long_cells = long_table(raw["long"])
    out_long = table(LONG_HEADERS, long_rows)
    print(out, out_long, *(t["line"] for t in targets), sep="\n")
    md = markdown((out, out_long), targets, cells, store, notes)
    data = {**notes, "store_round_trip": store,
            "targets": [{k: v for k, v in t.items() if k != "line"} for t in targets],
            "cells": cells, "long_history_cells": long_cells}  # fmt: skip
    write_results("server", data, md)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    parser.add_argument("--litellm-venv", help=f"default ${procs.LITELLM_ENV} or "
                        f"{procs.LITELLM_DEFAULT}")  # fmt: skip
    parser.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0.0,
        help="the fake upstream's pause after each SSE event (default 0)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per cell (2; quick 1)")
    parser.add_argument("--memchat-commit", metavar="REV",
                        help="serve memchat's src/ as of this commit (git archive), not the "
                        "working tree")  # fmt: skip
    report(run(parser.parse_args()))


if __name__ == "__main__":
    main()
