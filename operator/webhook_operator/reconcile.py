"""Turn a Webhook resource into a registered delivery target, and keep it registered as its Secrets change.

This is everything the kopf handlers would otherwise do in their bodies: validate what the API server cannot
(Secrets exist and hold the key, the Custom template compiles, a Standard Webhooks secret decodes), resolve secret
values, register/replace/remove the webhook in the dispatcher, and tell the status writer about configuration
problems. Keeping it free of kopf means it is tested with plain calls, and the handlers stay one-liners.

A configuration problem never drops events: the webhook is registered in state ``failed`` with the reason, keeps
queueing, and delivers the held events once the Secret appears or the spec is fixed.

Secrets opt in (issue 13, finding 2): whoever may write a Webhook in a namespace must not thereby read every Secret
there through the operator (a confused deputy). A Secret is used only when it carries ``SECRET_OPT_IN_LABEL`` with
the value ``"true"``, which only someone allowed to write that Secret can set. Any other Secret is a configuration
error naming the Secret, the key and the label; its values are never put into a target. The rule is checked here,
on the labels the reader reports, whatever the reader does with the values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from webhook_operator.api.crd import GROUP
from webhook_operator.api.history import spec_history
from webhook_operator.api.webhook import SignatureScheme, WebhookSpec
from webhook_operator.delivery.dispatcher import Dispatcher
from webhook_operator.delivery.signing import standard_webhooks_key
from webhook_operator.delivery.target import WebhookTarget
from webhook_operator.delivery.template_pool import TemplatePool
from webhook_operator.formats.base import FormatError
from webhook_operator.formats.custom import compile_template
from webhook_operator.status.summary import OperatorConditions

log = logging.getLogger(__name__)

_SECRETISH_HEADERS = ("authorization", "x-api-key", "api-key", "x-auth-token", "proxy-authorization")

#: The label a Secret must carry, with the value ``"true"``, before any Webhook may use it. The operator's Secret
#: watch selects on it too, so unlabelled Secrets are never watched or cached.
SECRET_OPT_IN_LABEL = f"{GROUP}/webhook-secret"
SECRET_OPT_IN_VALUE = "true"  # noqa: S105 - a label value, not a credential
SECRET_OPT_IN_SELECTOR = f"{SECRET_OPT_IN_LABEL}={SECRET_OPT_IN_VALUE}"


def opted_in(labels: Mapping[str, str] | None) -> bool:
    """Whether a Secret with these labels may be used by Webhooks: exactly ``"true"``, nothing looser."""
    return (labels or {}).get(SECRET_OPT_IN_LABEL) == SECRET_OPT_IN_VALUE


class SecretUnavailable(RuntimeError):
    """A Secret could not be read for a reason other than its absence (API server down, forbidden): worth
    retrying soon. The handler layer turns it into its framework's retry (kopf's TemporaryError)."""


class SecretAccessDenied(RuntimeError):
    """The operator is deliberately not allowed to read this Secret (installed without Secret access there): a
    configuration error shown in status, not a retry loop."""


@dataclass(frozen=True)
class SecretData:
    """A Secret as the reconciler needs it. Readers should leave ``values`` empty for a Secret that is not opted
    in (nothing to keep in memory); the reconciler ignores them either way."""

    labels: Mapping[str, str]
    values: Mapping[str, str]


class SecretReader(Protocol):
    async def read(self, namespace: str, name: str) -> SecretData | None:
        """A Secret's labels and decoded values, or None when it does not exist. Raises ``SecretUnavailable``
        (retry) or ``SecretAccessDenied`` (configuration error)."""
        ...


class StatusSink(Protocol):
    """What the reconciler tells the status writer (``status.writer.StatusWriter`` implements it)."""

    def set_generation(self, key: str, generation: int | None, *, uid: str | None = None,
                       current_status: Mapping[str, Any] | None = None) -> None: ...  # fmt: skip

    def set_extra(self, key: str, conditions: OperatorConditions) -> None: ...

    def set_history(self, key: str, history: Mapping[str, Any]) -> None: ...

    def record_event(self, key: str, type: str, reason: str, message: str) -> None: ...

    def forget(self, key: str) -> None: ...


@dataclass(frozen=True)
class Resource:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] | None = None
    #: The last spec the operator handled (kopf's diff base), when the caller knows it: the base of
    #: ``status.changeDescription``. None on create, resume and the start-up listing.
    previous_spec: Mapping[str, Any] | None = None
    #: ``metadata.managedFields``: who (which field manager) last wrote the spec, for ``status.updatedBy``.
    managed_fields: Sequence[Mapping[str, Any]] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Resolved:
    secrets: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None
    errors: list[str] = field(default_factory=list)
    refs: set[tuple[str, str]] = field(default_factory=set)


class Reconciler:
    def __init__(self, dispatcher: Dispatcher, secrets: SecretReader, status: StatusSink, *,
                 admins: tuple[str, ...] = (), ui_base_url: str | None = None,
                 templates: TemplatePool | None = None) -> None:  # fmt: skip
        self._dispatcher = dispatcher
        self._templates = templates  # compiles Custom templates in a worker: a 64 KiB template can take seconds
        self._secrets = secrets
        self._status = status
        self._admins = admins
        self._ui_base_url = ui_base_url
        self._resources: dict[str, Resource] = {}
        self._refs: dict[str, set[tuple[str, str]]] = {}
        self._warned: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # key -> generation already warned about inline secrets

    def known(self, key: str) -> bool:
        return key in self._resources

    def keys(self) -> set[str]:
        return set(self._resources)

    def references(self, namespace: str, name: str) -> bool:
        """Whether any Webhook uses this Secret (only those are cached and trigger re-reconciles)."""
        return any((namespace, name) in refs for refs in self._refs.values())

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def apply(self, resource: Resource) -> WebhookTarget | None:
        """Register (or re-register) a Webhook. Returns the target, or None when the spec cannot be parsed at all
        (only possible if the CRD in the cluster is older than the operator). Serialised per webhook: the kopf
        handlers and the Secret watch call it concurrently."""
        async with self._lock(resource.key):
            return await self._apply(resource)

    async def _apply(self, resource: Resource) -> WebhookTarget | None:
        key = resource.key
        self._resources[key] = resource
        self._status.set_generation(key, resource.generation, uid=resource.uid, current_status=resource.status)
        history = spec_history(
            previous_spec=resource.previous_spec, spec=resource.spec, previous_status=resource.status, now=time.time(),
            meta={"generation": resource.generation, "managedFields": list(resource.managed_fields)},
        )  # fmt: skip
        if history is not None:
            self._status.set_history(key, history)
        try:
            spec = WebhookSpec.model_validate(dict(resource.spec))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"spec.{where}: {first['msg']}" if where else first["msg"]
            log.warning("webhook %s has an invalid spec: %s", key, message)
            self._status.set_extra(key, OperatorConditions(configuration_error=f"invalid spec: {message}"))
            return None
        resolved = await self._resolve(resource.namespace, spec, key)
        self._refs[key] = resolved.refs
        errors = list(resolved.errors)
        if spec.webhook_config.payload_template is not None:
            try:
                if self._templates is not None:
                    await self._templates.check(spec.webhook_config.payload_template, tenant=resource.namespace)
                else:
                    compile_template(spec.webhook_config.payload_template)
            except FormatError as exc:
                errors.append(str(exc))
        warnings = self._inline_secret_warnings(spec)
        if warnings and self._warned.get(key) != resource.generation:
            self._warned[key] = resource.generation
            self._status.record_event(key, "Warning", "InlineSecret", " ".join(warnings))
        self._status.set_extra(key, OperatorConditions(warnings=tuple(warnings)))
        target = WebhookTarget(
            key=key, spec=spec, secrets=resolved.secrets, secret_headers=resolved.headers,
            ca_bundle=resolved.ca_bundle, config_error="; ".join(errors) or None, admins=self._admins,
            ui_base_url=self._ui_base_url,
        )  # fmt: skip
        await self._dispatcher.register(target)
        return target

    async def remove(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Forget a deleted Webhook. With ``uid``, only if the registered one is that object: a deletion of an old
        object seen after a new one of the same name was created must not remove the new one."""
        key = f"{namespace}/{name}"
        async with self._lock(key):
            current = self._resources.get(key)
            if uid and current is not None and current.uid and current.uid != uid:
                log.info("ignoring the deletion of an older %s (uid %s); uid %s is registered", key, uid, current.uid)
                return
            self._resources.pop(key, None)
            self._refs.pop(key, None)
            self._warned.pop(key, None)
            await self._dispatcher.unregister(key)
            self._status.forget(key)

    async def secret_changed(self, namespace: str, name: str) -> int:
        """A Secret was created, changed or deleted: re-apply every Webhook that references it (rotation takes
        effect without touching the Webhook). Returns how many were re-applied."""
        dependents = [key for key, refs in self._refs.items() if (namespace, name) in refs]
        for key in dependents:
            async with self._lock(key):
                resource = self._resources.get(key)  # read under the lock: it may have been removed meanwhile
                if resource is None:
                    continue
                try:
                    await self._apply(resource)
                except Exception:  # one failing dependent must not leave the others on the old Secret
                    log.exception("re-applying %s after Secret %s/%s changed failed", key, namespace, name)
        return len(dependents)

    async def _value(self, namespace: str, name: str, key: str, what: str, out: Resolved, webhook: str) -> str | None:
        out.refs.add((namespace, name))
        # Known as referenced before the read, so a Secret created while we read is not ignored by the watch.
        self._refs.setdefault(webhook, set()).add((namespace, name))
        opt_in = f'{SECRET_OPT_IN_LABEL}: "{SECRET_OPT_IN_VALUE}"'
        try:
            data = await self._secrets.read(namespace, name)
        except SecretAccessDenied as exc:
            out.errors.append(f"{what}: Secret {namespace}/{name} (key {key!r}) cannot be used: {exc}")
            return None
        if data is None or not opted_in(data.labels):
            # One message for both: a tenant who cannot read Secrets must not learn which names exist (issue 13 review).
            out.errors.append(f"{what}: Secret {namespace}/{name} (key {key!r}) not found or not labelled {opt_in}; "
                              "a Secret used by Webhooks must exist and carry that label")  # fmt: skip
            return None
        if key not in data.values:
            out.errors.append(f"{what}: Secret {namespace}/{name} has no key {key!r}")
            return None
        return data.values[key]

    async def _resolve(self, namespace: str, spec: WebhookSpec, webhook: str) -> Resolved:
        cfg = spec.webhook_config
        out = Resolved()
        if cfg.secret_key_ref is not None:
            ref = cfg.secret_key_ref
            value = await self._value(namespace, ref.name, ref.key, "webhookConfig.secretKeyRef", out, webhook)
            if value is not None:
                out.secrets = (value,)
        elif cfg.secret_key:
            out.secrets = (cfg.secret_key,)
        if out.secrets and cfg.signature_scheme is SignatureScheme.STANDARD_WEBHOOKS:
            try:
                standard_webhooks_key(out.secrets[0])
            except ValueError as exc:
                out.errors.append(f"webhookConfig signing secret: {exc}")
        for i, header in enumerate(cfg.headers_from or []):
            ref = header.secret_key_ref
            value = await self._value(namespace, ref.name, ref.key, f"webhookConfig.headersFrom[{i}]", out, webhook)
            if value is not None:
                out.headers[header.name] = value.strip("\r\n")
        if cfg.tls is not None and cfg.tls.ca_bundle_secret_ref is not None:
            ref = cfg.tls.ca_bundle_secret_ref
            out.ca_bundle = await self._value(
                namespace, ref.name, ref.key, "webhookConfig.tls.caBundleSecretRef", out, webhook
            )
        return out

    @staticmethod
    def _inline_secret_warnings(spec: WebhookSpec) -> list[str]:
        cfg = spec.webhook_config
        warnings = []
        if cfg.secret_key:
            warnings.append("webhookConfig.secretKey is inline and lands in git: move it to a Secret "
                            "(webhookConfig.secretKeyRef).")  # fmt: skip
        inline = sorted(h for h in (cfg.headers or {}) if h.lower() in _SECRETISH_HEADERS)
        if inline:
            warnings.append(f"webhookConfig.headers {', '.join(inline)} look like credentials and land in git: "
                            "use webhookConfig.headersFrom.")  # fmt: skip
        return warnings
