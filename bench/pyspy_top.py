"""Top-N table of a py-spy raw (collapsed stacks) recording: own and inclusive share of samples per function.

    .venv/bin/python bench/pyspy_top.py /tmp/spy/webhook-c16-n2000.txt [--top 20] [--by own|inclusive]

py-spy's raw format is one line per distinct stack, ``frame;frame;...;leaf COUNT``, each frame ``function
(file:line)``. Frames are grouped by function and file (the line dropped), so a function's share does not split by
the line it was sampled at; a function counts once per stack for the inclusive share (recursion is not double
counted). Shares are of all samples in the file: with ``--gil`` (as bench/operator_bench.py records) samples of the
thread holding the GIL, i.e. the interpreter's CPU.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "webhook_operator/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ") and "thread (" not in f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--by", choices=("own", "inclusive"), default="own")
    args = parser.parse_args()
    total, own, inclusive = summarise(args.file)
    ranking = own if args.by == "own" else inclusive
    print(f"{total} samples\n\n| own % | inclusive % | function |\n|---|---|---|")
    for name, _ in ranking.most_common(args.top):
        print(f"| {own[name] * 100 / total:.1f} | {inclusive[name] * 100 / total:.1f} | `{name}` |")


if __name__ == "__main__":
    main()
