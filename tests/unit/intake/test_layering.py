"""The intake stays a leaf of the data path: it never imports delivery, status, handlers, cli or kopf.

import-linter does not know the intake package yet; this checks the same rule by importing every intake module in
a fresh interpreter and looking at what got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support.events import ROOT

FORBIDDEN = ("webhook_operator.delivery", "webhook_operator.status", "webhook_operator.handlers",
             "webhook_operator.cli", "webhook_operator.config", "kopf")  # fmt: skip
MODULES = ("app", "auth", "errors", "openapi", "operations", "parsing", "submitter")


def test_intake_imports_nothing_it_must_not() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import webhook_operator.intake.{m}\n" for m in MODULES)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=60).stdout  # fmt: skip
    loaded = json.loads(out)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_parsing_does_not_pull_in_aiohttp() -> None:
    code = "import sys, webhook_operator.intake.parsing; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=60).stdout  # fmt: skip
    assert out.strip() == "False"
