"""Run the operator: kopf's event loop with this package's handlers and the given configuration."""

from __future__ import annotations

import asyncio

import kopf

import webhook_operator.handlers  # noqa: F401 - registers the handlers
from webhook_operator.config import OperatorConfig
from webhook_operator.handlers import secrets
from webhook_operator.logs import setup_logging


def run(config: OperatorConfig) -> None:
    setup_logging(config.log_format, config.log_level)
    memo = kopf.Memo(config=config)
    if config.read_secrets:  # else no Secret watch at all: it would need RBAC the install did not grant
        secrets.register()
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            memo=memo,
        )
    )
