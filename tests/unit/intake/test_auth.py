"""Token sources, constant-time matching and signature verification, without HTTP."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from webhook_operator.delivery.signing import openmetadata_signature
from webhook_operator.intake.auth import (
    OM_SIGNATURE_HEADER,
    SEED_SIGNATURE_HEADER,
    BearerAuth,
    FileTokens,
    SignatureVerifier,
    StaticTokens,
    caller_of,
    load_hmac_secret,
    parse_token_lines,
)
from webhook_operator.intake.errors import IntakeError

from .helpers import om_signature


def write(path: Path, text: str, bump: int) -> None:
    """Write and move the mtime by ``bump`` seconds, so the change shows even on coarse-mtime filesystems."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


def test_token_lines_ignore_blanks_comments_and_whitespace() -> None:
    text = "# intake tokens\n\n  alpha  \n#beta\nbeta\r\n   # indented comment\n"
    assert parse_token_lines(text) == frozenset({"alpha", "beta"})


def test_static_tokens_drop_empty_entries() -> None:
    assert StaticTokens(["a", "", "  ", " b "]).tokens() == frozenset({"a", "b"})


class Clock:
    """A monotonic clock the test moves: ``FileTokens`` looks at its file at most once a second of it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_file_tokens_follow_rotation_and_keep_the_same_set_while_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write(path, "old\n", 0)
    clock = Clock()
    source = FileTokens(path, clock=clock)
    first = source.tokens()
    assert first == frozenset({"old"})
    clock.now += 5
    assert source.tokens() is first  # unchanged file: same object, digests stay cached
    write(path, "# rotated\nnew\n", 5)
    clock.now += 1
    assert source.tokens() == frozenset({"new"})


def test_file_tokens_look_at_the_file_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write(path, "old\n", 0)
    clock = Clock()
    source = FileTokens(path, clock=clock)
    write(path, "new\n", 5)
    clock.now += 0.999
    assert source.tokens() == frozenset({"old"})  # revocation takes up to a second ...
    clock.now += 0.001
    assert source.tokens() == frozenset({"new"})  # ... and no longer
    path.unlink()
    clock.now += 0.5
    assert source.tokens() == frozenset({"new"})
    clock.now += 0.5
    assert source.tokens() == frozenset()


def test_file_tokens_fail_closed_when_the_file_goes_away(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write(path, "tok\n", 0)
    clock = Clock()
    source = FileTokens(path, clock=clock)
    path.unlink()
    clock.now += 1
    assert source.tokens() == frozenset()
    write(path, "tok\n", 10)
    clock.now += 1
    assert source.tokens() == frozenset({"tok"})


def test_file_tokens_missing_at_start_accept_nothing_until_the_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    clock = Clock()
    source = FileTokens(path, clock=clock)  # the Secret volume is optional: the operator may start first
    assert source.tokens() == frozenset()
    write(path, "late\n", 0)
    clock.now += 1
    assert source.tokens() == frozenset({"late"})


def test_file_tokens_not_utf8_accept_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_bytes(b"\xff\xfe\n")
    assert FileTokens(path).tokens() == frozenset()


def test_matching_checks_every_token_and_any_length() -> None:
    auth = BearerAuth(StaticTokens(["first", "second-token", "x" * 300]))
    assert auth.matches("first") and auth.matches("second-token") and auth.matches("x" * 300)
    assert not auth.matches("firs") and not auth.matches("first ") and not auth.matches("")


def test_matching_compares_fixed_length_digests_against_all_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = BearerAuth(StaticTokens(["a", "bb", "ccc"]))
    assert auth.matches("a")  # matches the first token and still compares the other two
    assert len(seen) == 3 and set(seen) == {(32, 32)}


async def test_the_caller_is_named_by_the_first_8_hex_digits_of_the_tokens_sha256() -> None:
    auth = BearerAuth(StaticTokens(["tok-1", "tok-2"]))
    for token in ("tok-1", "tok-2"):
        request = make_mocked_request("POST", "/", headers={"Authorization": f"Bearer {token}"})
        await auth.authenticate(request)
        assert caller_of(request).name == "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def test_no_tokens_and_no_anonymous_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="anonymous"):
        BearerAuth(None, allow_anonymous=False)


def test_seed_hex_signature_as_the_operator_itself_signs() -> None:
    body = b'{"id":"1"}'
    verifier = SignatureVerifier(b"shh")
    verifier.verify({SEED_SIGNATURE_HEADER: openmetadata_signature("shh", body)}, body)
    verifier.verify({SEED_SIGNATURE_HEADER: openmetadata_signature("shh", body).upper().replace("SHA256=", "sha256=")},
                    body)  # fmt: skip


def test_openmetadata_base64_signature() -> None:
    body = '{"entityFullyQualifiedName":"顧客マスタ"}'.encode()
    SignatureVerifier(b"shh").verify({OM_SIGNATURE_HEADER: om_signature(b"shh", body)}, body)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing signature: send X-OM-Signature"),
        ({OM_SIGNATURE_HEADER: om_signature(b"other", b"body")}, "X-OM-Signature does not match the body"),
        ({OM_SIGNATURE_HEADER: om_signature(b"shh", b"body!")}, "X-OM-Signature does not match the body"),
        ({OM_SIGNATURE_HEADER: "sha256=***"}, "X-OM-Signature is malformed: expected sha256=<base64"),
        ({OM_SIGNATURE_HEADER: om_signature(b"shh", b"body")[7:]}, "X-OM-Signature is malformed"),
        ({SEED_SIGNATURE_HEADER: "sha256=zz"}, "X-OpenMetadata-Signature is malformed: expected sha256=<hex"),
        (
            {SEED_SIGNATURE_HEADER: openmetadata_signature("other", b"body")},
            "X-OpenMetadata-Signature does not match the body",
        ),
        (  # both present: both must be right
            {OM_SIGNATURE_HEADER: om_signature(b"shh", b"body"), SEED_SIGNATURE_HEADER: "sha256=" + "0" * 64},
            "X-OpenMetadata-Signature does not match the body",
        ),
    ],
)
def test_bad_signatures_are_401_naming_the_header(headers: dict[str, str], message: str) -> None:
    with pytest.raises(IntakeError) as info:
        SignatureVerifier(b"shh").verify(headers, b"body")
    assert info.value.status == 401
    assert info.value.message.startswith(message), info.value.message


def test_signature_is_over_the_exact_bytes() -> None:
    body = b'{"a": 1}'
    sig = "sha256=" + hmac.new(b"k", b'{"a":1}', hashlib.sha256).hexdigest()
    with pytest.raises(IntakeError):
        SignatureVerifier(b"k").verify({SEED_SIGNATURE_HEADER: sig}, body)


def test_hmac_secret_file_drops_only_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b" spaced secret \n")
    assert load_hmac_secret(path) == b" spaced secret "
    path.write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty"):
        load_hmac_secret(path)
