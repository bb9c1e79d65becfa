"""The operator process around the engine graph (``graph.build_graph``): the Kubernetes status writer and
Events, the intake and health servers, retention pruning and the initial sync, started and stopped as a unit.

Built here rather than in the kopf start-up handler so the handler stays a one-liner, and kept apart from the
graph so that tests and benchmarks build the same engine without Kubernetes or servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from kubernetes import client as k8s

from webhook_operator.availability import Availability
from webhook_operator.config import ConfigError, OperatorConfig
from webhook_operator.delivery.sender import AiohttpSender
from webhook_operator.delivery.ssrf import AddressPolicy
from webhook_operator.graph import build_graph
from webhook_operator.intake.app import ServerTLS, add_routes, build_app, error_response
from webhook_operator.intake.auth import (
    Authenticator,
    BearerAuth,
    Closeable,
    FileTokens,
    TokenSource,
    load_hmac_secret,
)
from webhook_operator.intake.errors import IntakeError
from webhook_operator.intake.operations import operation_routes
from webhook_operator.metrics import CONTENT_TYPE
from webhook_operator.reconcile import Resource, SecretReader
from webhook_operator.sharing.setup import Sharing, advertise_address, replica_id
from webhook_operator.status.events import EventRecorder
from webhook_operator.status.writer import StatusWriter
from webhook_operator.store.base import Store
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0
TLS_RELOAD_EVERY = 30.0  # how often the TLS files are checked for a rotation (a Secret volume lags ~1 min anyway)

#: How often the queue limits' sweep moves events past their webhook's maxQueuedAge to the dead letters.
SWEEP_EVERY = 60.0


def build_store(config: OperatorConfig) -> Store:
    """The configured backend, unopened. The PostgreSQL DSN is read from its Secret file here, at start-up, and
    only the file's name ever appears in a message, never its content."""
    if config.store != "postgres":
        return SqliteStore(config.store_path, synchronous=config.store_sync, budget=config.store_max_bytes)
    dsn = config.postgres_dsn
    if config.postgres_dsn_file is not None:
        try:
            dsn = config.postgres_dsn_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"--postgres-dsn-file {config.postgres_dsn_file}: cannot read it ({exc.strerror})"
            ) from None  # the OSError names only the file, but nothing from reading a secret should be chained
        if not dsn:
            raise ConfigError(f"--postgres-dsn-file {config.postgres_dsn_file} is empty")
    assert dsn is not None  # config checked that one of the two is set
    # The budget's share of a volume means nothing for a remote database: only a fixed --store-max-bytes applies.
    return PostgresStore(dsn, budget=config.store_max_bytes)


class OperatorService:
    """The operator process: the engine graph plus what only a deployment has — the Kubernetes status writer and
    Events, the intake and health servers, retention pruning and the initial sync that gates readiness."""

    def __init__(self, config: OperatorConfig, *, api: k8s.ApiClient, secrets: SecretReader,
                 tokens: TokenSource | None = None, api_auth: Authenticator | None = None) -> None:  # fmt: skip
        self.config = config
        # TLS for the intake + operations listener (users' Kubernetes tokens travel there); the health listener
        # stays plain HTTP for the kubelet's probes, and /metrics can require a token (docs/operations.md).
        self.tls: ServerTLS | None = None
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            self.tls = ServerTLS(config.tls_cert_file, config.tls_key_file)
        metrics_tokens = FileTokens(config.metrics_token_file) if config.metrics_token_file else None
        self._metrics_auth = BearerAuth(metrics_tokens) if metrics_tokens is not None else None
        self._api_auth = api_auth
        policy = AddressPolicy.from_config(
            allow=config.ssrf_allow_cidr,
            deny=config.ssrf_deny_cidr,
            allow_loopback=config.allow_loopback,
            allow_private=config.ssrf_allow_private,
        )
        self.events = EventRecorder(api)
        self.writer = StatusWriter(api, interval=config.status_interval, events=self.events)
        self.graph = build_graph(
            store=build_store(config),
            sender=AiohttpSender(policy), status=self.writer, secrets=secrets, retry=config.retry,
            max_concurrency=config.max_concurrency, admins=config.admins, ui_base_url=config.ui_base_url,
            queue_limits=config.queue_limits, templates=config.template_limits, shared=config.store == "postgres",
            webhooks_known=False,  # until the start-up list is registered, events are accepted unrouted
        )  # fmt: skip
        self.metrics, self.store, self.dispatcher = self.graph.metrics, self.graph.store, self.graph.dispatcher
        #: Work sharing between replicas on PostgreSQL (issue 15): leases, status ownership, forwarding. None on SQLite.
        self.sharing: Sharing | None = None
        if config.store == "postgres":
            self.sharing = Sharing.build(
                self.store, self.dispatcher, replica=replica_id(config.replica_id),
                lease_duration=config.lease_duration, tls_cert_file=config.tls_cert_file,
                address=advertise_address(config.advertise_address, config.intake_address[1]),
                registry=self.metrics.registry, forget=self._released,
            )  # fmt: skip
            self.writer.share(self.sharing.leases.owns, self.sharing.claim)
        self.operations, self.annotations = self.graph.operations, self.graph.annotations
        self.reconciler = self.graph.reconciler
        self.secrets = secrets
        if tokens is None and config.intake_token_file is not None:
            tokens = FileTokens(config.intake_token_file)
        hmac_secret = load_hmac_secret(config.intake_hmac_secret_file) if config.intake_hmac_secret_file else None
        self.availability = Availability()  # the intake once the store is open, delivery once the list is read
        self.intake_app = build_app(
            self.graph.submitter, tokens=tokens, allow_anonymous=config.intake_allow_anonymous,
            hmac_secret=hmac_secret, max_body=config.intake_max_body, ready=lambda: self.availability.intake,
        )  # fmt: skip
        self._mount_operations(api_auth, tokens)
        self.intake_app.middlewares.insert(0, self._count_intake)  # outermost: sees the final status code
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._intake_by_status: dict[int, Any] = {}  # labelled children, one per status code: no .labels() per POST

    def _released(self, key: str) -> None:
        """This replica stopped delivering ``key`` (lease lost or handed over): its per-webhook series go (the new
        owner reports them), and the status writer forgets the last state it saw, which was never written — else a
        later re-adoption would be compared with it and post a transition Event that never happened."""
        self.metrics.forget(key)
        self.writer.released(key)

    def _mount_operations(self, auth: Authenticator | None, tokens: TokenSource | None) -> None:
        """The operations API on the intake's port: ``api_auth=kubernetes`` needs the Kubernetes authenticator
        (the kopf start-up passes it), ``tokens`` takes the intake's bearer tokens (never anonymous)."""
        if auth is None and self.config.api_auth == "tokens":
            if tokens is None:
                raise ValueError("--api-auth=tokens needs intake tokens (--intake-token-file)")
            auth = BearerAuth(tokens)
        if auth is None:
            log.warning("operations API not served: --api-auth=kubernetes without a Kubernetes authenticator")
            return
        forward = self.sharing.forwarder if self.sharing is not None else None
        add_routes(self.intake_app, operation_routes(self.operations, forward=forward), auth=auth)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve, then open the store (retried until it opens; the intake answers 503 until then). Returns with
        the intake accepting; the Webhook list is ``sync_webhooks``'s, in the background (``availability``)."""
        await self.writer.start()
        await self._serve(self.intake_app, self.config.intake_address, self.tls.context if self.tls else None)
        await self._serve(self._health_app(), self.config.health_address)
        await self.availability.open_store(self.graph.open)
        if self.sharing is not None:  # before any webhook registers: each then takes its lease at once
            await self.sharing.start()
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="store-prune"))
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self._reload_tls_forever(self.tls), name="tls-reload"))

    async def sync_webhooks(self, list_webhooks: Callable[[], Awaitable[Sequence[Resource]]]) -> None:
        """Read the Webhook list (retried until the API server answers) and ``initial_sync`` it; the intake
        accepts meanwhile (``availability``)."""
        await self.availability.sync_webhooks(list_webhooks, self.initial_sync)

    async def initial_sync(self, resources: Sequence[Resource]) -> None:
        """Register every existing Webhook, drop queues of Webhooks deleted while we were down, then route the
        events accepted unrouted meanwhile (``delivery.unrouted``) and everything new at once."""
        for resource in resources:
            try:
                await self.reconciler.apply(resource)
            except Exception:  # one bad resource must not keep the others (and the intake) down
                log.exception("could not register %s at start-up; kopf will retry it", resource.key)
        known = self.reconciler.keys()
        watched = set(self.config.namespaces)
        for key in await self.store.webhook_keys():
            namespace = key.partition("/")[0]
            if key not in known and (not watched or namespace in watched):
                log.info("purging the queue of %s: the Webhook no longer exists", key)
                await self.dispatcher.unregister(key)
        self.dispatcher.webhooks_known()

    async def stop(self) -> None:
        self.availability.intake = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        if isinstance(self._api_auth, Closeable):  # its review threads, after the last request is answered
            self._api_auth.close()
        if self.sharing is not None:
            await self.sharing.leases.stop()  # no more adoptions while the lanes close
        await self.graph.dispatcher.stop()  # before the writer stops: the last snapshots still reach status
        if self.sharing is not None:  # the lanes' last completions passed the fence: now give every lease up
            await self.sharing.stop()
        await self.writer.stop()
        self.events.close()
        await self.graph.close()

    # -- servers ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _count_intake(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.path == "/api/v1/events":
            counter = self._intake_by_status.get(response.status)
            if counter is None:
                counter = self._intake_by_status[response.status] = self.metrics.intake_requests.labels(
                    str(response.status)
                )
            counter.inc()
            if response.status >= 400:  # accepted and duplicate events are counted by the graph's submitter
                self.metrics.intake_events.labels("rejected").inc()
        return response

    async def _serve(self, app: web.Application, address: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, address[0], address[1], ssl_context=tls).start()
        self._runners.append(runner)

    def bound_port(self, index: int) -> int:
        """The port a server really bound (tests configure port 0)."""
        server = self._runners[index].addresses[0]
        return int(server[1])

    def _health_app(self) -> web.Application:
        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(request: web.Request) -> web.Response:
            status, body = await self.availability.readiness(len(self.dispatcher.keys()), self.store.unrouted_count)
            sharing = {"replica": self.sharing.leases.replica, "owned": self.sharing.leases.owned_count} \
                if self.sharing is not None else {}  # fmt: skip
            return web.json_response({**body, **sharing}, status=status)

        async def metrics(request: web.Request) -> web.Response:
            if self._metrics_auth is not None:  # series carry namespace and Webhook names
                try:
                    await self._metrics_auth.authenticate(request)
                except IntakeError as exc:
                    return error_response(exc)
            stats = self.writer.stats
            self.metrics.sync_status_patches(stats.patches_total, stats.patch_failures_total)
            with contextlib.suppress(Exception):  # a store that cannot answer must not take /metrics down
                self.metrics.store_usage(await self.store.usage())
            return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app

    async def _reload_tls_forever(self, tls: ServerTLS) -> None:
        while True:
            await asyncio.sleep(TLS_RELOAD_EVERY)
            tls.reload_if_changed()

    async def _prune_forever(self) -> None:
        """Retention every hour; the queue limits' sweep (events past maxQueuedAge → dead letters) every minute,
        and after each retention pass the dead-letter counts status shows are read back."""
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            pruned = time.monotonic() - last_prune >= PRUNE_EVERY
            if pruned:
                last_prune = time.monotonic()
                with contextlib.suppress(Exception):
                    removed = await self.store.prune(time.time() - self.config.retention)
                    log.info("retention: pruned %d events (delivered, or dead letters past retention)", removed)
            try:
                await self.dispatcher.sweep(refresh_dead_letters=pruned)
            except Exception:  # the next sweep tries again
                log.exception("queue limits sweep failed")
