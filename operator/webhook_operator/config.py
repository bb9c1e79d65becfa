"""Operator configuration: one table of settings, each a command-line flag and a WEBHOOK_OPERATOR_* variable.

Flags win over environment variables, which win over defaults. Bad values fail at start-up with a message naming
the flag and the variable, never later on the delivery path. ``docs/configuration.md`` is generated from ``SETTINGS``
(a test keeps it in sync), so the table users read is the table the code parses.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook_operator.delivery.limits import DEFAULT_MAX_AGE, DEFAULT_MAX_QUEUED, QueueLimits
from webhook_operator.delivery.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_duration
from webhook_operator.delivery.template_pool import MIB, TemplateLimits
from webhook_operator.store.base import SpaceBudget

ENV_PREFIX = "WEBHOOK_OPERATOR_"
# In a pod the Service reaches the operator on the pod IP, so listening on all interfaces is the point.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


class ConfigError(ValueError):
    """A setting has a bad value; the message names the flag and the environment variable."""


@dataclass(frozen=True)
class Setting:
    name: str  # attribute of OperatorConfig; flag --name-with-dashes; env WEBHOOK_OPERATOR_NAME
    default: str
    help: str
    multiple: bool = False  # repeatable flag; comma-separated in the environment
    flag_only: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("namespaces", "", "Namespaces to watch (repeat the flag or comma-separate); empty = all namespaces.",
            multiple=True),
    Setting("read_secrets", "true", "Resolve Webhooks' Secret references: watch and read Secrets labelled "
            "events.open-metadata.org/webhook-secret=true in the watched namespaces. false: every Secret reference "
            "is a configuration error and no Secret is watched (a cluster-wide install without cluster-wide Secret "
            "RBAC)."),
    Setting("intake_address", f"{ALL_INTERFACES}:8080", "host:port of the event intake and operations API."),
    Setting("intake_token_file", "", "File with accepted bearer tokens, one per line (re-read when it changes; "
            "mount a Secret there). Required unless anonymous intake is enabled."),
    Setting("intake_allow_anonymous", "false", "Accept events without a bearer token (local demos only)."),
    Setting("intake_hmac_secret_file", "", "File with the secret of incoming OpenMetadata signatures; when set, "
            "unsigned or wrongly signed event posts are refused."),
    Setting("intake_max_body", "8MiB", "Largest accepted event post (413 above)."),
    Setting("tls_cert_file", "", "PEM certificate (chain) of the intake and operations API listener; with "
            "--tls-key-file it serves HTTPS only (TLS 1.2 or later), so callers' tokens never cross the network in "
            "clear. Checked every 30 s and reloaded when the files change (a rotated Secret)."),
    Setting("tls_key_file", "", "PEM private key for --tls-cert-file."),
    Setting("api_auth", "kubernetes", "Operations API auth: kubernetes (TokenReview + SubjectAccessReview of the "
            "caller's own token) or tokens (the intake tokens)."),
    Setting("store", "sqlite", "Event store: sqlite (one file on a volume: one replica) or postgres (a PostgreSQL "
            "database several replicas can share; needs --postgres-dsn-file or WEBHOOK_OPERATOR_POSTGRES_DSN)."),
    Setting("postgres_dsn_file", "", "File holding the PostgreSQL connection string (URL or key=value) for --store "
            "postgres; mount a Secret there. Or set WEBHOOK_OPERATOR_POSTGRES_DSN (e.g. from a secretKeyRef), never a "
            "flag. Its password is never logged."),
    Setting("replica_id", "", "This replica's name among the replicas sharing a PostgreSQL store (--store postgres "
            "only): unique per running process. Empty: $POD_NAME, else <hostname>-<pid>."),
    Setting("lease_duration", "10s", "Work sharing (--store postgres): how long a replica's lease on a webhook lasts "
            "without renewal (renewed every third of it). A dead replica's webhooks move to another replica within "
            "lease duration + lease duration / 3 (default 10s: at most 13.3s)."),
    Setting("advertise_address", "", "host:port where the other replicas reach this replica's operations API, to "
            "forward operations on webhooks it delivers (--store postgres). Empty: $POD_IP and the intake port."),
    Setting("store_path", "/var/lib/webhook-operator/store.db", "SQLite store file (events, queues, delivery log)."),
    Setting("store_sync", "FULL", "SQLite synchronous mode for acknowledged writes: FULL (survives power loss) or "
            "NORMAL (survives process crashes)."),
    Setting("retention", "7d", "How long delivered events, dead letters and delivery-log lines are kept."),
    Setting("store_max_bytes", "80%", "Space budget of the store: a size (800MiB) or a share of the volume it is on "
            "(80%). Over it, new events are refused with 507 before the volume is full; the rest is headroom for "
            "deliveries, the delivery log and the WAL."),
    Setting("max_queued_per_webhook", "100000", "Most events queued per Webhook; beyond it the oldest (never the "
            "batch being retried) move to the dead letters. A Webhook's spec.delivery.maxQueued can only lower it."),
    Setting("max_queued_age", "7d", "Longest an event waits queued; older ones (never the batch being retried) "
            "move to the dead letters. A Webhook's spec.delivery.maxQueuedAge can only lower it."),
    Setting("retry_schedule", ",".join(f"{int(s)}s" for s in DEFAULT_SCHEDULE),
            "Delays between attempts of a failing batch; after the last, the webhook is retryLimitReached."),
    Setting("max_concurrency", "64", "Requests in flight across all webhooks."),
    Setting("template_workers", "2", "Worker processes that render Custom payload templates, off the event loop."),
    Setting("template_timeout", "2s", "Wall-clock limit of one template render or compile: past it the worker is "
            "killed and the batch fails (\"exceeded the time limit\"). Each render may use this plus 1s of CPU."),
    Setting("template_memory_limit", "256MiB", "Address-space limit (RLIMIT_AS) of each template worker (at least "
            "64MiB): a template needing more fails (\"exceeded the memory limit\"); add workers times this to the "
            "pod's memory limit."),
    Setting("status_interval", "2s", "Least time between two status patches of one webhook (the last state is "
            "always written)."),
    Setting("ssrf_allow_cidr", "", "CIDRs endpoints may resolve to despite the default refusals (repeatable).",
            multiple=True),
    Setting("ssrf_deny_cidr", "", "CIDRs endpoints may never resolve to (repeatable).", multiple=True),
    Setting("ssrf_allow_private", "false", "Allow endpoints on private addresses (10/8, 172.16/12, 192.168/16, "
            "100.64/10, fc00::/7: in-cluster Services and pods). Off: only --ssrf-allow-cidr re-opens a private "
            "range. Cloud metadata addresses stay refused either way."),
    Setting("allow_loopback", "false", "Allow endpoints on loopback addresses (tests and local demos)."),
    Setting("admins", "", "Admin recipients for sendToAdmins (repeatable).", multiple=True),
    Setting("ui_base_url", "", "OpenMetadata UI base URL, for entity links in chat messages."),
    Setting("log_format", "text", "Log format: text or json."),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR."),
    Setting("health_address", f"{ALL_INTERFACES}:8081", "host:port of /healthz, /readyz and /metrics."),
    Setting("metrics_token_file", "", "File with the bearer token(s) /metrics requires, one per line (re-read when "
            "it changes); empty: /metrics is open. /healthz and /readyz stay open."),
)  # fmt: skip


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]") or ALL_INTERFACES, int(port)


_SIZES = {"": 1, "b": 1, "kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2}


def _size(text: str) -> int:
    number = text.strip().rstrip("BbIiKkMm")
    unit = text.strip()[len(number) :].lower()
    if not number.isdigit() or unit not in _SIZES:
        raise ValueError(f"expected a size like 8MiB, got {text!r}")
    return int(number) * _SIZES[unit]


def _cidrs(values: Sequence[str]) -> tuple[str, ...]:
    for value in values:
        ipaddress.ip_network(value, strict=True)
    return tuple(values)


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        for option in options:
            if text.lower() == option.lower():
                return option
        raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")

    return parse


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    read_secrets: bool = True
    intake_address: tuple[str, int] = (ALL_INTERFACES, 8080)
    intake_token_file: Path | None = None
    intake_allow_anonymous: bool = False
    intake_hmac_secret_file: Path | None = None
    intake_max_body: int = 8 * 1024 * 1024
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    api_auth: str = "kubernetes"
    store: str = "sqlite"
    postgres_dsn_file: Path | None = None
    postgres_dsn: str | None = field(default=None, repr=False)  # env only: it may carry a password
    replica_id: str = ""
    lease_duration: float = 10.0
    advertise_address: str = ""
    store_path: Path = Path("/var/lib/webhook-operator/store.db")
    store_sync: str = "FULL"
    retention: float = 7 * 86400.0
    store_max_bytes: SpaceBudget = field(default_factory=lambda: SpaceBudget(fraction=0.8))
    max_queued_per_webhook: int = DEFAULT_MAX_QUEUED
    max_queued_age: float = DEFAULT_MAX_AGE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_concurrency: int = 64
    template_workers: int = 2
    template_timeout: float = 2.0
    template_memory_limit: int = 256 * MIB
    status_interval: float = 2.0
    ssrf_allow_cidr: tuple[str, ...] = ()
    ssrf_deny_cidr: tuple[str, ...] = ()
    ssrf_allow_private: bool = False
    allow_loopback: bool = False
    admins: tuple[str, ...] = ()
    ui_base_url: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    health_address: tuple[str, int] = (ALL_INTERFACES, 8081)
    metrics_token_file: Path | None = None

    @property
    def queue_limits(self) -> QueueLimits:
        """The per-Webhook queue limits (``--max-queued-per-webhook``, ``--max-queued-age``)."""
        return QueueLimits(self.max_queued_per_webhook, self.max_queued_age)

    @property
    def template_limits(self) -> TemplateLimits:
        """The Custom template workers' limits (``--template-workers``, ``--template-timeout``,
        ``--template-memory-limit``)."""
        return TemplateLimits(self.template_workers, self.template_timeout, self.template_memory_limit)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "namespaces": lambda v: tuple(v),
    "read_secrets": _bool,
    "intake_address": _address,
    "intake_token_file": lambda v: Path(v) if v else None,
    "intake_allow_anonymous": _bool,
    "intake_hmac_secret_file": lambda v: Path(v) if v else None,
    "intake_max_body": _size,
    "tls_cert_file": lambda v: Path(v) if v else None,
    "tls_key_file": lambda v: Path(v) if v else None,
    "api_auth": _choice("kubernetes", "tokens"),
    "store": _choice("sqlite", "postgres"),
    "postgres_dsn_file": lambda v: Path(v) if v else None,
    "replica_id": lambda v: v.strip(),
    "lease_duration": lambda v: _positive_duration(v),
    "advertise_address": lambda v: _advertised(v.strip()),
    "store_path": Path,
    "store_sync": _choice("FULL", "NORMAL"),
    "retention": parse_duration,
    "store_max_bytes": lambda v: _budget(v),
    "max_queued_per_webhook": lambda v: _positive(int(v)),
    "max_queued_age": lambda v: _positive_duration(v),
    "retry_schedule": RetryPolicy.parse,
    "max_concurrency": lambda v: _positive(int(v)),
    "template_workers": lambda v: _positive(int(v)),
    "template_timeout": lambda v: _positive_duration(v),
    "template_memory_limit": lambda v: _at_least(_size(v), 64 * MIB, "64MiB"),
    "status_interval": parse_duration,
    "ssrf_allow_cidr": _cidrs,
    "ssrf_deny_cidr": _cidrs,
    "ssrf_allow_private": _bool,
    "allow_loopback": _bool,
    "admins": lambda v: tuple(v),
    "ui_base_url": lambda v: v.rstrip("/") or None,
    "log_format": _choice("text", "json"),
    "log_level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
    "health_address": _address,
    "metrics_token_file": lambda v: Path(v) if v else None,
}


def _budget(text: str) -> SpaceBudget:
    """``80%`` of the store's volume or a size such as ``800MiB``."""
    if text.strip().endswith("%"):
        percent = float(text.strip()[:-1])
        if not 0 < percent <= 100:
            raise ValueError(f"a share of the volume must be above 0% and at most 100%, got {text!r}")
        return SpaceBudget(fraction=percent / 100)
    return SpaceBudget(max_bytes=_positive(_size(text)))


def _advertised(text: str) -> str:
    """``host:port`` (``[v6]:port``) as given, checked; empty stays empty (the pod IP is taken then)."""
    if text:
        host, port = _address(text)
        if host == ALL_INTERFACES or not port:
            raise ValueError(f"expected the host:port other replicas can reach, got {text!r}")
    return text


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def _at_least(value: int, least: int, text: str) -> int:
    if value < least:
        raise ValueError(f"must be at least {text}")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        kwargs: dict[str, Any] = {"dest": setting.name, "default": None, "help": f"{setting.help} [${setting.env}]"}
        if setting.multiple:
            kwargs["action"] = "append"
        parser.add_argument(setting.flag, **kwargs)


def from_sources(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> OperatorConfig:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw: Any = getattr(args, setting.name, None) if args is not None else None
        source = setting.flag
        if raw is None:
            raw, source = environ.get(setting.env), setting.env
        if raw is None:
            raw, source = setting.default, "default"
        if setting.multiple:
            items = raw if isinstance(raw, list) else [raw]
            raw = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
        try:
            parsed = _PARSERS[setting.name](raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.flag} / {setting.env} (from {source}): {exc}") from exc
        values["retry" if setting.name == "retry_schedule" else setting.name] = parsed
    config = OperatorConfig(**values, postgres_dsn=environ.get(POSTGRES_DSN_ENV) or None)
    _check_store(config)
    if config.intake_token_file is None and not config.intake_allow_anonymous:
        raise ConfigError(
            "the intake needs bearer tokens: set --intake-token-file / WEBHOOK_OPERATOR_INTAKE_TOKEN_FILE "
            "(or --intake-allow-anonymous / WEBHOOK_OPERATOR_INTAKE_ALLOW_ANONYMOUS=true, for local demos only)"
        )
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("TLS needs both --tls-cert-file / WEBHOOK_OPERATOR_TLS_CERT_FILE and --tls-key-file / "
                          "WEBHOOK_OPERATOR_TLS_KEY_FILE, or neither")  # fmt: skip
    return config


#: The PostgreSQL DSN itself, from the environment only (a flag would show it in the process list).
POSTGRES_DSN_ENV = ENV_PREFIX + "POSTGRES_DSN"


def _check_store(config: OperatorConfig) -> None:
    """Messages name the settings, never the DSN (it may carry a password)."""
    dsn_file = "--postgres-dsn-file / WEBHOOK_OPERATOR_POSTGRES_DSN_FILE"
    given = (config.postgres_dsn_file is not None) + (config.postgres_dsn is not None)
    if config.store == "postgres" and given == 0:
        raise ConfigError(f"--store postgres needs the database's connection string: set {dsn_file} or "
                          f"{POSTGRES_DSN_ENV}")  # fmt: skip
    if given == 2:
        raise ConfigError(f"the PostgreSQL connection string is set twice: use {dsn_file} or {POSTGRES_DSN_ENV}, "
                          "not both")  # fmt: skip
    if config.store != "postgres" and given:
        raise ConfigError(f"a PostgreSQL connection string is set but the store is {config.store}: "
                          "add --store postgres / WEBHOOK_OPERATOR_STORE=postgres, or remove it")  # fmt: skip


def markdown_table() -> str:
    lines = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(none)"
        lines.append(f"| `{s.flag}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"
