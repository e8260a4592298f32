"""`make bench` on a small month: every stage runs, the rerun says nothing changed, the floors are measured."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_every_stage_and_its_floors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env["TMPDIR"] = str(tmp_path)  # its temporary folder, removed at the end
    done = subprocess.run([sys.executable, "-m", "bench.run", "--events", "2000", "--repeat", "1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    out = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stderr[-2000:]
    stages = re.search(r"end to end: ([\d,]+) events in ([\d.]+) s = ([\d,]+) events/s", out)
    assert stages and int(stages[1].replace(",", "")) >= 2000, out[-3000:]
    assert "said nothing changed, not rated" in out
    floors = re.search(r"floors: ([\d.]+) CPU s; .* at least ([\d.]+) s for ([\d,]+) events, at most ([\d,]+) "
                       r"events/s", out)
    assert floors and float(floors[1]) > 0 and floors[3] == stages[1], out[-3000:]
    for floor in ("hash + copy + fsync", "Polars read + type", "DuckDB INSERT", "dbt import +", "the one query"):
        assert f"floor: {floor}" in out
    assert not list(tmp_path.iterdir()), "the benchmark left its folder behind"
