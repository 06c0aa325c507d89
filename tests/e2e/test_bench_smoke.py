"""The benchmark's smallest size runs end to end and prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.mark.timeout(300)
def test_the_smoke_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--size", "smoke", "--managers", "pyvm2",
                        "--json", str(tmp_path / "bench.json")],
                       capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "measurement" in r.stdout and "daemon RSS" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert (tmp_path / "bench.json").stat().st_size > 0
