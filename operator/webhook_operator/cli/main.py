"""``webhook-operator`` command line.

Sub-commands stay thin: parse arguments, call one function of the layer that owns the work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webhook_operator import __version__


def _crd(args: argparse.Namespace) -> int:
    from webhook_operator.api.crd import render_crd

    text = render_crd()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhook-operator", description="OpenMetadata Webhooks on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    crd = sub.add_parser("crd", help="print the Webhook CustomResourceDefinition (YAML)")
    crd.add_argument("-o", "--output", help="write to this file instead of stdout")
    crd.set_defaults(func=_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
