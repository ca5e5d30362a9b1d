"""Shared helpers for the benchmarks: timing, tables, JSON and markdown output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def head() -> tuple[str, bool]:
    """The checkout's short HEAD ("unknown" outside git) and whether src/ has uncommitted
    changes."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return git("rev-parse", "--short", "HEAD") or "unknown", bool(
        git("status", "--porcelain", "--", "src")
    )


def run_stamp(load: Sequence[float]) -> dict[str, str]:
    """When and at which commit a run starts (a "+" marks uncommitted changes in src/), and
    the load average given (1 / 5 / 15 min)."""
    commit, dirty = head()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit + ("+" if dirty else ""),
        "load": " / ".join(f"{x:.1f}" for x in load),
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in headers], *[[_fmt(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def write_results(name: str, data: dict, markdown: str) -> None:
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "docs" / "benchmarks").mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), **data}
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (ROOT / "docs" / "benchmarks" / f"{name}.md").write_text(markdown.rstrip() + "\n")
