"""``kubectl-webhook``: test a Webhook, read its delivery log, resume, skip and redeliver — as a kubectl plugin.

Installed as the console script ``kubectl-webhook``, so with it on ``PATH`` ``kubectl webhook deliveries NAME``
works. It reads the kubeconfig like kubectl (``--kubeconfig``, ``KUBECONFIG``, ``--context``, the context's
namespace) and calls the operator's operations API with the user's own bearer token, so the operator's
TokenReview + SubjectAccessReview let Kubernetes RBAC decide (``docs/operations.md``).

Where the API is: ``--server URL`` or ``WEBHOOK_OPERATOR_API`` (e.g. after ``kubectl port-forward``), else through
the API server's service proxy: ``<cluster>/api/v1/namespaces/<operator-namespace>/services/<service>:http/proxy``.
When the operator serves HTTPS (``--tls-cert-file``), ``--certificate-authority`` / ``WEBHOOK_OPERATOR_API_CA``
names the CA that signed its certificate (with ``--server https://...``), and ``--operator-scheme https`` makes the
service proxy speak HTTPS to it (``https:<service>:http``; the API server does not verify that certificate).

Exit status: 0 done; 1 the operation failed (a failing test, nothing to resume, unknown webhook, operator
unreachable); 2 not authenticated or not allowed (401/403), or bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

from webhook_operator import __version__
from webhook_operator.api.operations import PROXY_TOKEN_HEADER, format_time, parse_time

EXIT_OK, EXIT_FAILED, EXIT_DENIED = 0, 1, 2
DEFAULT_OPERATOR_NAMESPACE = "webhook-operator"
DEFAULT_OPERATOR_SERVICE = "webhook-operator"
SERVER_ENV, TOKEN_ENV, CA_ENV = "WEBHOOK_OPERATOR_API", "WEBHOOK_OPERATOR_TOKEN", "WEBHOOK_OPERATOR_API_CA"


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# -- where the API is and who we are -------------------------------------------------------------------------------


@dataclass
class Target:
    base_url: str
    token: str
    namespace: str
    verify: Any = True  # bool or a CA file path
    cert: tuple[str, str] | None = None


def _kubeconfig(args: argparse.Namespace) -> tuple[Any, str]:
    """The kubernetes client's view of the kubeconfig (host, TLS, token from token/tokenFile/exec/auth-provider)
    and the context's namespace."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    path = args.kubeconfig or None
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        chosen = next((c for c in contexts if c["name"] == args.context), None) if args.context else active
        if args.context and chosen is None:
            raise CliError(f"context {args.context!r} not found in the kubeconfig", EXIT_DENIED)
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(config_file=path, context=args.context, client_configuration=cfg,
                                    persist_config=False)  # type: ignore[no-untyped-call]  # fmt: skip
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        raise CliError(f"cannot read the kubeconfig: {exc}", EXIT_DENIED) from None
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return cfg, str(namespace)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    server = args.server or environ.get(SERVER_ENV) or None
    token = args.token or environ.get(TOKEN_ENV) or None
    cfg = None
    namespace = "default"
    if server is None or token is None or args.namespace is None:
        try:
            cfg, namespace = _kubeconfig(args)
        except CliError:
            if server is None or token is None:
                raise
    if token is None:
        keys = (cfg.api_key or {}) if cfg is not None else {}
        bearer = str(keys.get("BearerToken") or keys.get("authorization") or "")  # the key differs by version
        if not bearer.lower().startswith("bearer "):
            raise CliError("the kubeconfig user has no bearer token (client certificates cannot be passed on to "
                           f"the operator): pass --token or set {TOKEN_ENV}", EXIT_DENIED)  # fmt: skip
        token = bearer[7:].strip()
    namespace = args.namespace or namespace
    if server is not None:
        ca = args.certificate_authority or environ.get(CA_ENV) or None
        verify: Any = False if args.insecure_skip_tls_verify else (ca or True)
        return Target(server.rstrip("/"), token, namespace, verify=verify)
    assert cfg is not None
    base = proxy_url(cfg.host, args.operator_namespace, args.operator_service, scheme=args.operator_scheme)
    verify = False if (args.insecure_skip_tls_verify or not cfg.verify_ssl) else (cfg.ssl_ca_cert or True)
    cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None
    return Target(base, token, namespace, verify=verify, cert=cert)


def proxy_url(cluster: str, namespace: str, service: str, port: str = "http", *, scheme: str = "http") -> str:
    """The operator's API through the Kubernetes API server's service proxy (``https:`` when the operator serves
    TLS; the port keeps its name ``http``)."""
    prefix = "https:" if scheme == "https" else ""
    return f"{cluster.rstrip('/')}/api/v1/namespaces/{namespace}/services/{prefix}{service}:{port}/proxy"


def webhook_path(namespace: str, name: str, action: str) -> str:
    return f"/api/v1/namespaces/{namespace}/webhooks/{name}/{action}"


def tls_context(target: Target) -> ssl.SSLContext:
    """What httpx verifies the operator (or the API server) with: the system CAs, a CA file, or nothing
    (``--insecure-skip-tls-verify``), plus the kubeconfig's client certificate for the API server's proxy."""
    context = ssl.create_default_context(cafile=target.verify if isinstance(target.verify, str) else None)
    if target.verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if target.cert is not None:
        context.load_cert_chain(*target.cert)
    return context


def call(target: Target, method: str, path: str, *, params: Mapping[str, str] | None = None,
         body: Any = None, timeout: float = 60.0) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {target.token}", PROXY_TOKEN_HEADER: f"Bearer {target.token}",
               "Accept": "application/json", "User-Agent": f"kubectl-webhook/{__version__}"}  # fmt: skip
    url = target.base_url + path
    try:
        with httpx.Client(verify=tls_context(target), timeout=timeout, trust_env=False) as client:
            response = client.request(method, url, params=params, json=body, headers=headers)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        raise CliError(f"cannot reach the operator at {target.base_url}: {type(exc).__name__}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:300] or response.reason_phrase}
    if response.status_code >= 400:
        message = data.get("error") or data.get("message") or response.reason_phrase
        code = EXIT_DENIED if response.status_code in (401, 403) else EXIT_FAILED
        hint = {401: " (not authenticated)", 403: " (not allowed)"}.get(response.status_code, "")
        raise CliError(f"{message} [HTTP {response.status_code}{hint}]", code)
    return data if isinstance(data, dict) else {"items": data}


# -- output --------------------------------------------------------------------------------------------------------


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _events(ids: Sequence[str], wide: bool) -> str:
    if not ids:
        return "-"
    if wide:
        return ",".join(ids)
    return ids[0] + (f" (+{len(ids) - 1})" if len(ids) > 1 else "")


def deliveries_table(items: Sequence[Mapping[str, Any]], *, wide: bool = False) -> str:
    """The delivery log as kubectl-style columns; ``wide`` adds full event ids and the receiver's answer."""
    header = ["TIME", "OUTCOME", "ATTEMPT", "HTTP", "DURATION", "EVENTS", "DETAIL"]
    if wide:
        header += ["DELIVERY ID", "RESPONSE"]
    rows = [header]
    for item in items:
        detail = item.get("error") or item.get("note") or ""
        row = [
            str(item.get("time", "")), str(item.get("outcome", "")), str(item.get("attempt", "")),
            str(item["statusCode"]) if item.get("statusCode") is not None else "-",
            f"{float(item.get('durationMs') or 0):.0f}ms", _events(item.get("eventIds") or [], wide),
            detail if wide else _cut(detail, 60) or "-",
        ]  # fmt: skip
        if wide:
            row += [str(item.get("deliveryId", "")), _cut(str(item.get("responseBody") or ""), 80) or "-"]
        rows.append([cell if cell else "-" for cell in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows) + "\n"


def summarize_test(key: str, result: Mapping[str, Any]) -> str:
    code = f"HTTP {result['statusCode']}" if result.get("statusCode") is not None else "no response"
    verdict = "OK" if result.get("success") else "FAILED"
    line = f"test of {key}: {verdict} ({code} in {round(float(result.get('latencyMs') or 0))} ms"
    line += f", event {result.get('eventId')})"
    if not result.get("success") and result.get("error"):
        line += f"\n  error: {result['error']}"
    return line + "\n"


# -- commands ------------------------------------------------------------------------------------------------------


def _emit(out: TextIO, data: Any, output: str, text: str) -> None:
    out.write(json.dumps(data, indent=2) + "\n" if output == "json" else text)


def cmd_deliveries(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    now = time.time()
    params: dict[str, str] = {"limit": str(args.limit)}
    if args.status:
        params["status"] = args.status
    for name in ("since", "until"):
        value = getattr(args, name)
        if value:
            params[name] = format_time(parse_time(value, now))
    if args.cursor:
        params["cursor"] = args.cursor
    data = call(target, "GET", webhook_path(target.namespace, args.name, "deliveries"), params=params)
    items = data.get("items") or []
    if args.output == "json":
        _emit(out, data, "json", "")
    elif not items:
        out.write(f"No deliveries found for {target.namespace}/{args.name}.\n")
    else:
        out.write(deliveries_table(items, wide=args.output == "wide"))
    if data.get("next") and args.output != "json":
        sys.stderr.write(f"(more: add --cursor {data['next']})\n")
    return EXIT_OK


def cmd_test(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    result = call(target, "POST", webhook_path(target.namespace, args.name, "test"))
    _emit(out, result, args.output, summarize_test(f"{target.namespace}/{args.name}", result))
    return EXIT_OK if result.get("success") else EXIT_FAILED


def cmd_simple(action: str) -> Any:
    def run(args: argparse.Namespace, target: Target, out: TextIO) -> int:
        result = call(target, "POST", webhook_path(target.namespace, args.name, action))
        _emit(out, result, args.output, f"{target.namespace}/{args.name}: {result.get('message', 'done')}\n")
        return EXIT_OK

    return run


def redeliver_body(args: argparse.Namespace, now: float) -> dict[str, Any]:
    ids = [i for chunk in args.ids or [] for i in chunk.split(",") if i.strip()]
    if bool(ids) == bool(args.since):
        raise CliError("give either --ids or --since (with an optional --until)", EXIT_DENIED)
    if args.until and not args.since:
        raise CliError("--until needs --since", EXIT_DENIED)
    body: dict[str, Any] = {"eventIds": [i.strip() for i in ids]} if ids else {}
    try:
        if args.since:
            body["since"] = format_time(parse_time(args.since, now))
        if args.until:
            body["until"] = format_time(parse_time(args.until, now))
    except ValueError as exc:
        raise CliError(str(exc), EXIT_DENIED) from None
    if args.to:
        body["to"] = args.to
    return body


def cmd_redeliver(args: argparse.Namespace, target: Target, out: TextIO) -> int:
    body = redeliver_body(args, time.time())
    result = call(target, "POST", webhook_path(target.namespace, args.name, "redeliver"), body=body)
    text = f"{target.namespace}/{args.name}: {result.get('message', 'queued')}\n"
    if result.get("missing"):
        missing = ", ".join(result["missing"])
        text += f"  not found for this webhook (never routed to it, pruned, or unknown): {missing}\n"
    _emit(out, result, args.output, text)
    return EXIT_OK


# -- arguments -----------------------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace of the Webhook (default: the context's namespace)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context (default: the current context)")
    common.add_argument("--server", help=f"operations API URL, e.g. http://127.0.0.1:8080 [${SERVER_ENV}]; "
                        "default: through the API server's service proxy")  # fmt: skip
    common.add_argument("--token", help=f"bearer token to present [${TOKEN_ENV}]; default: the kubeconfig user's")
    common.add_argument("--operator-namespace", default=DEFAULT_OPERATOR_NAMESPACE,
                        help="namespace of the operator's Service (service proxy only)")  # fmt: skip
    common.add_argument("--operator-service", default=DEFAULT_OPERATOR_SERVICE,
                        help="name of the operator's Service (service proxy only)")  # fmt: skip
    common.add_argument("--operator-scheme", choices=("http", "https"), default="http",
                        help="https when the operator serves TLS (--tls-cert-file; service proxy only)")  # fmt: skip
    common.add_argument("--certificate-authority", metavar="FILE",
                        help=f"CA file to verify an https --server with [${CA_ENV}]")  # fmt: skip
    common.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify TLS certificates")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="kubectl webhook", description="Operate OpenMetadata Webhooks: test, "
                                     "delivery log, resume, skip, redeliver.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, func: Any, outputs: tuple[str, ...] = ("text", "json")) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.add_argument("name", metavar="NAME", help="the Webhook")
        p.add_argument("-o", "--output", choices=outputs, default=outputs[0], help="output format")
        p.set_defaults(func=func)
        return p

    deliveries = add("deliveries", "print the delivery log (oldest first)", cmd_deliveries, ("table", "wide", "json"))
    deliveries.add_argument("--status", help="only this outcome: delivered, failed, skipped, resumed, "
                            "redeliveryQueued, test")  # fmt: skip
    deliveries.add_argument("--since", help="from this time (RFC 3339) or age (30m, 2h, 1d)")
    deliveries.add_argument("--until", help="before this time (RFC 3339) or age")
    deliveries.add_argument("--limit", type=int, default=100, choices=range(1, 1001), metavar="N",
                            help="lines per page (1-1000, default 100)")  # fmt: skip
    deliveries.add_argument("--cursor", help="continue after a previous page (printed when there is more)")
    add("test", "send a test event through the Webhook's format, signature and headers", cmd_test)
    add("resume", "send the held batch now (after retryLimitReached or during a retry wait)", cmd_simple("resume"))
    add("skip", "drop the held batch (recorded in the delivery log) and go on with the next", cmd_simple("skip"))
    redeliver = add("redeliver", "queue past events again, to this or another Webhook", cmd_redeliver)
    redeliver.add_argument("--ids", action="append", help="event ids (comma-separated, repeatable)")
    redeliver.add_argument("--since", help="events this Webhook delivered, accepted from this time or age")
    redeliver.add_argument("--until", help="... and before this time or age")
    redeliver.add_argument("--to", help="another Webhook in the same namespace to send them to")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         environ: Mapping[str, str] | None = None) -> int:  # fmt: skip
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        target = resolve(args, os.environ if environ is None else environ)
        return int(args.func(args, target, stream))
    except CliError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.code
    except ValueError as exc:  # a time that does not parse
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_DENIED


if __name__ == "__main__":
    sys.exit(main())
