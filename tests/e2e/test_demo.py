"""`make demo` runs end to end: the README's main command must work on a fresh machine (CI proves it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.webhooks import ROOT


@pytest.mark.timeout(400)
def test_demo_runs_end_to_end_with_a_short_stream() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py"), "--events", "12", "--fail-for", "3"],
        capture_output=True, text=True, timeout=380, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "hack")},
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{out[-4000:]}\n{result.stderr[-4000:]}"
    assert "kubectl get webhooks -n demo -o wide" in out
    assert "-> 503" in out, "the flaky endpoint should fail first"
    assert "DeliveryRecovered" in out or "DeliveryFailing" in out, out[-3000:]
    table = out.split("kubectl get webhooks -n demo -o wide", 1)[1]
    flaky = next(line for line in table.splitlines() if line.startswith("flaky"))
    assert flaky.split()[1:4] == ["Generic", "active", "True"], flaky
