"""The repository carries everything it uses: no file points outside it, and the sample events are read from it.

The project started next to a ``shared/`` directory (sample events, reference notes, the seed's spec) and on one
machine's paths. A clone on another machine has neither, so a file that still names them is a test that cannot find
its data, a demo that streams nothing or a doc whose link is dead. The scan covers every file git knows about,
tracked or new (not ignored), code and docs alike.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from support import events

ROOT = Path(__file__).resolve().parents[3]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()  # holds the patterns below, so it is not scanned

#: Paths that only exist beside this repository or on one machine. Precise on purpose: "shared" is an ordinary word
#: (``100.64/10 shared/CGNAT``, "fixtures shared by ..."), and URLs may contain a home or work segment.
OUTSIDE = {
    "the shared/ directory beside the repository": re.compile(r"\.\./shared(?![\w.-])"),
    "a path into shared/": re.compile(r"(?<![\w.-])shared/(?:data|reference|spec)(?![\w-])"),
    "a pathlib path into shared/": re.compile(r"""["']shared["']\s*/\s*["']"""),
    "an absolute /work, /root or /home path": re.compile(r"(?<![\w.:/~-])/(?:work|root|home)/"),
}


def repository_files() -> list[str]:
    """Every file git tracks or would track (new files too, before they are committed); ignored ones excluded."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with git ls-files in {ROOT}: {exc}")
    return sorted({name for name in listing.decode().split("\0") if name and (ROOT / name).is_file()})


def references_outside(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in OUTSIDE.items():
            match = pattern.search(line)
            if match:
                found.append(f"line {number}: {what}: {match.group(0)!r} in {line.strip()[:160]!r}")
    return found


#: The examples below are spelled with placeholders, so that this file itself names no place outside the
#: repository (a scanner reading it would otherwise see the very paths it forbids).
SPELLING = {"out": "sha" + "red", "work": "wo" + "rk", "root": "ro" + "ot", "home": "ho" + "me"}


@pytest.mark.parametrize(
    "template",
    [
        "EVENTS = ROOT.parent / '{out}' / 'data' / 'openmetadata-events'",
        'EVENTS_DIR = ROOT.parent / "{out}" / "data"',
        "see ../{out}/data/openmetadata-events/README.md",
        "the samples live in {out}/data/openmetadata-events/",
        "kstatus (``/{work}/{out}/reference/anchors.md``)",
        "the seed ({out}/spec/openmetadata-webhook-entity.md)",
        "cache in /{root}/.cache/webhook-operator",
        "cd /{home}/alice/webhook-operator",
        "PATH=/{work}/main/.venv/bin:$PATH",
    ],
)
def test_the_patterns_catch_outside_references(template: str) -> None:
    assert references_outside(template.format(**SPELLING))


@pytest.mark.parametrize(
    "template",
    [
        "Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10 shared/CGNAT, fc00::/7) are allowed",
        '"""Fixtures shared by the integration tests."""',
        "no cookies shared between receivers; shared-secret",
        "the sample events in `examples/events/`",
        "https://example.com/{home}/index.html and http://host/{work}/queue",
        "cached in `~/.cache/webhook-operator/`; data in /var/lib/webhook-operator",
        "PYTHONPATH=/tmp/omsamples/sdk python generate.py --out .",
    ],
)
def test_the_patterns_leave_ordinary_text_alone(template: str) -> None:
    assert references_outside(template.format(**SPELLING)) == []


def test_no_file_references_anything_outside_the_repository() -> None:
    files = repository_files()
    assert "README.md" in files and "examples/events/README.md" in files, "git ls-files listed the wrong tree"
    offenders: list[str] = []
    for name in files:
        if name == SELF:
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: no paths to follow
        offenders += [f"{name} {finding}" for finding in references_outside(text)]
    assert offenders == [], "files that point outside the repository:\n" + "\n".join(offenders)


def test_sample_events_load_from_inside_the_repository() -> None:
    """``tests/support/events.py`` reads all 40 samples from ``examples/events/`` in this checkout."""
    directory = ROOT / "examples" / "events"
    assert events.EVENTS_DIR.resolve() == directory.resolve()
    files = events.event_files()
    assert [path.resolve().parent for path in files] == [directory.resolve()] * len(files)
    index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    assert [path.name for path in files] == [entry["file"] for entry in index["events"]]
    assert len(files) == 40
    loaded = events.all_events()
    assert [(e.event_type, e.entity_type, e.entity_id) for e in loaded] == [
        (entry["eventType"], entry["entityType"], entry["entityId"]) for entry in index["events"]
    ]
    assert events.raw(40)["eventType"] == "entitySoftDeleted"
    batch = json.loads((directory / index["batchFile"]["file"]).read_text(encoding="utf-8"))
    assert batch["paging"]["total"] == len(batch["data"]) == len(index["batchFile"]["files"])
    for name in ("README.md", "generate.py"):  # provenance and the generator travel with the data
        assert (directory / name).is_file()
    assert "openmetadata-ingestion" in (directory / "README.md").read_text(encoding="utf-8")


def test_the_demo_streams_the_samples_from_inside_the_repository() -> None:
    source = (ROOT / "hack" / "demo.py").read_text(encoding="utf-8")
    (assignment,) = re.findall(r"^EVENTS = .*$", source, flags=re.MULTILINE)
    assert assignment == 'EVENTS = ROOT / "examples" / "events"'
