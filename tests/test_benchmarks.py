"""The benchmarks stay runnable: each runs in its quick mode and must pass its own checks (exact counts
and totals, zero errors). Their timings are reported, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.timeout(300)
def test_the_http_load_benchmark_passes_its_checks_in_quick_mode(postgres: object, tmp_path: Path) -> None:
    # ``postgres``: the same prerequisites (server binaries), failing loudly when they are missing.
    report = tmp_path / "load.md"
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "load_http.py"), "--quick", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    assert "| zero errors | pass |" in text
    assert "| expenses per user in the database = created | pass |" in text
    assert "fail" not in text.split("| Check | Result | Detail |", 1)[1]


@pytest.mark.timeout(300)
def test_the_stdio_benchmark_passes_its_checks_in_quick_mode(postgres: object, tmp_path: Path) -> None:
    # benchmarks/run.py --quick: every phase on tiny datasets (SQLite and PostgreSQL), so that the benchmark
    # behind BENCHMARKS.md cannot rot. Its own checks (exact answers, rows stored = rows created, the first
    # page read through the index, zero errors) decide its exit status; its times are never asserted.
    report = tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    for section in ("## 1. Cold start", "## 2. Warm latency", "## 3. Scale", "## 4. Memory", "## 5. Throughput"):
        assert section in text, f"{section} is missing from the report"
    checks = text.split("## Checks", 1)[1]
    assert "**FAIL**" not in checks
    assert "| no tool call failed or answered wrongly | pass |" in checks
    assert "| no ERROR in the servers' logs | pass |" in checks
    stored = "throughput: the database holds exactly the expenses acknowledged (count, cents) | pass |"
    assert checks.count(stored) == 2, "one throughput check per database (SQLite, PostgreSQL)"
