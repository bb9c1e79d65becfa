"""A webhook as the delivery engine needs it: the validated spec plus resolved secrets, ready to send.

The operator resolves Secrets; the engine never reads Kubernetes. Secret values sit in ``secrets`` and
``secret_headers`` only, and ``sensitive_values`` lists everything that must be masked in logs and status;
``masked_forms`` adds the encodings a receiver is likely to echo them in (see ``encoded_forms``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import quote, quote_plus

from webhook_operator.api.webhook import WebhookSpec

MASK = "***"


@dataclass(frozen=True)
class WebhookTarget:
    key: str  # "namespace/name": queue and status identity
    spec: WebhookSpec
    #: Signing secrets, current first (more than one during a key rotation).
    secrets: tuple[str, ...] = ()
    #: Header values resolved from Secrets (headersFrom); merged over spec headers at send time.
    secret_headers: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None
    #: A configuration problem no retry can fix (missing Secret, template that does not compile): state failed.
    config_error: str | None = None
    admins: tuple[str, ...] = ()
    ui_base_url: str | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def sensitive_values(self) -> tuple[str, ...]:
        inline = (self.spec.webhook_config.secret_key,) if self.spec.webhook_config.secret_key else ()
        values = (*self.secrets, *self.secret_headers.values(), *inline)
        return tuple(v for v in values if len(v) >= 4)  # masking 1-3 chars would shred unrelated text

    @cached_property
    def masked_forms(self) -> tuple[str, ...]:
        """Every form of every sensitive value that masking replaces, longest first; computed once per target
        (a target is immutable: a spec or Secret change registers a new one)."""
        return encoded_forms(self.sensitive_values)

    def headers(self) -> dict[str, str]:
        merged = dict(self.spec.webhook_config.headers or {})
        merged.update(self.secret_headers)
        return merged

    def delivery_shape(self) -> tuple[object, ...]:
        """What decides how a batch is sent: a change here is a new configuration, which resumes a paused
        webhook. Labels, annotations or an identical re-registration are not."""
        return (self.spec.model_dump(mode="json"), self.secrets, tuple(sorted(self.secret_headers.items())),
                self.ca_bundle, self.config_error)  # fmt: skip


_MIN_FORM = 4  # as for values: a shorter form would shred unrelated text
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_URLSAFE = str.maketrans("+/", "-_")


def _b64_forms(raw: bytes) -> set[str]:
    """base64 and urlsafe base64 of ``raw``, padded and not, and the characters that encode only ``raw`` when it
    sits at byte offset 1 or 2 (mod 3) inside a longer base64 string, e.g. ``Basic base64(user:secret)``: at most
    two characters at each edge mix in neighbouring bytes and cannot be predicted."""
    forms: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        start, end = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6  # characters made of raw's bits only
        variants = [encoded[start:end]] if shift else [encoded, encoded.rstrip("="), encoded[start:end]]
        forms.update(variants)
        forms.update(v.translate(_URLSAFE) for v in variants)
    return forms


def encoded_forms(values: Iterable[str]) -> tuple[str, ...]:
    """What masking replaces for each value, longest first (so a form that contains another goes whole, e.g. the
    padded base64 before the unpadded): the value; JSON-escaped (``ensure_ascii`` on and off); URL-encoded
    (``quote`` and ``quote_plus``, nothing safe, upper- and lowercase escapes); base64 and urlsafe base64, padded
    and not, alone or at any alignment inside a longer base64 string. Forms shorter than 4 characters are left
    out. Not covered: other encodings (hex, HTML entities, ``\\/``-escaped JSON, double encoding), a value split
    or transformed by the receiver."""
    forms: set[str] = set()
    for value in values:
        if not value:
            continue
        forms.add(value)
        forms.add(json.dumps(value)[1:-1])
        forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        for url in (quote(value, safe=""), quote_plus(value, safe="")):
            forms.add(url)
            forms.add(_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), url))
        forms.update(_b64_forms(value.encode("utf-8")))
    return tuple(sorted((f for f in forms if len(f) >= _MIN_FORM), key=lambda f: (-len(f), f)))


def mask(text: str | None, secrets: Iterable[str]) -> str | None:
    """Replace every occurrence of a secret (e.g. echoed back in a response body) with ***. ``secrets`` is used as
    given: pass ``WebhookTarget.masked_forms`` (or ``encoded_forms(values)``) to cover encoded echoes too."""
    if not text:
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_cut_tail(text: str, forms: Iterable[str]) -> str:
    """For text that was cut: if it ends with the start (at least 4 characters) of a form, mask that tail too,
    so a secret cut at a limit does not survive as a prefix. The longest such tail wins."""
    cut = len(text)
    for form in forms:
        start = max(0, len(text) - len(form) + 1)
        head = form[:_MIN_FORM]
        pos = text.find(head, start)
        while pos != -1 and pos < cut:
            if form.startswith(text[pos:]):
                cut = pos
                break
            pos = text.find(head, pos + 1)
    return text if cut == len(text) else text[:cut] + MASK


_BEARER = re.compile(r"(?i)(authorization|x-api-key|token)([\"':= ]+)((?:bearer|basic|token)\s+)?([^\s\"',}]+)")


def mask_credentials(text: str) -> str:
    """Belt and braces for text we do not control (receiver error pages): hide anything credential-shaped."""
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
