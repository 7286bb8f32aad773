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
