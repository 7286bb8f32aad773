"""The statement import benchmark stays runnable: its quick mode must pass its own checks (rows stored =
rows in the statement, per currency to the cent; rules applied; the preview and the re-import change
nothing). Its timings are reported, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "import_bench.py"


@pytest.mark.timeout(300)
def test_the_import_benchmark_passes_its_checks_in_quick_mode(postgres: object, tmp_path: Path) -> None:
    # ``postgres``: the same prerequisites (server binaries), failing loudly when they are missing.
    report = tmp_path / "import.md"
    run = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    assert "| sqlite |" in text and "| postgresql |" in text
    checks = text.split("## Checks", 1)[1].split("## Machine", 1)[0]
    assert "| fail |" not in checks
    for database in ("sqlite", "postgresql"):
        for check in (
            "the raw insert stored every row",
            "the preview changed nothing",
            "the import stored exactly the statement's expenses (count, cents per currency)",
            "the rules filed what they match",
            "importing the file again added nothing",
        ):
            assert f"| {database}: {check} | pass |" in checks
