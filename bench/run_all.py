"""Run every benchmark, then rebuild docs/benchmarks.md from their sections.

python bench/run_all.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ["bench_context", "bench_embedded", "bench_recall", "bench_web", "bench_server"]
ORDER = ["context", "embedded", "recall", "web", "server"]


def build_report() -> None:
    sections = []
    folder = ROOT / "docs" / "benchmarks"
    names = sorted(p.stem for p in folder.glob("*.md"))
    for name in sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n)):
        sections.append((folder / f"{name}.md").read_text().strip())
    head = (
        "# Benchmarks\n\nThe latest numbers measured on this project's machines (2 cores, no "
        "GPU). Each section is written by its benchmark; rebuild everything with "
        "`python bench/run_all.py` (add `--quick` for a smoke run). Raw results: "
        "`bench/results/*.json`.\n"
    )
    (ROOT / "docs" / "benchmarks.md").write_text(head + "\n" + "\n\n".join(sections) + "\n")


def main() -> None:
    extra = sys.argv[1:]
    for bench in BENCHES:
        script = ROOT / "bench" / f"{bench}.py"
        if script.exists():
            print(f"== {bench}", flush=True)
            subprocess.run([sys.executable, str(script), *extra], check=True, cwd=ROOT)
    build_report()


if __name__ == "__main__":
    main()
