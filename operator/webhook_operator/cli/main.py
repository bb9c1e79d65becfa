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


def _run(args: argparse.Namespace) -> int:
    from webhook_operator.config import ConfigError, from_sources

    try:
        config = from_sources(args)
    except ConfigError as exc:
        print(f"webhook-operator: configuration error: {exc}", file=sys.stderr)
        return 2
    from webhook_operator.handlers.runtime import run

    run(config)
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    from webhook_operator.config import markdown_table

    sys.stdout.write(markdown_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhook-operator", description="OpenMetadata Webhooks on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    crd = sub.add_parser("crd", help="print the Webhook CustomResourceDefinition (YAML)")
    crd.add_argument("-o", "--output", help="write to this file instead of stdout")
    crd.set_defaults(func=_crd)
    from webhook_operator.config import add_arguments

    run = sub.add_parser("run", help="run the operator (watches Webhooks, serves the intake, delivers events)")
    add_arguments(run)
    run.set_defaults(func=_run)
    docs = sub.add_parser("config-table", help="print the configuration table (Markdown)")
    docs.set_defaults(func=_config_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
