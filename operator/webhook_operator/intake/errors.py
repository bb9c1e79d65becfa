"""The one error type of the intake, carrying the HTTP status it maps to.

Parsing, authentication and the handlers all raise ``IntakeError``; a single middleware turns it into the JSON error
body every client sees (``{"error": "...", "status": n}``). Keeping the status on the exception lets the pure parsing
code decide between 400 and 413 without knowing anything about aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping


class IntakeError(Exception):
    """A refused request: ``status`` is the HTTP status, ``message`` is safe to show to the caller.

    ``headers`` travel with the response (``WWW-Authenticate``, ``Retry-After``). ``close`` asks the server to drop
    the connection after answering, for refusals sent before the body was read (a 413 must not make the server drain
    gigabytes just to keep the connection alive).
    """

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None,
                 close: bool = False) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.close = close

    def __repr__(self) -> str:
        return f"IntakeError({self.status}, {self.message!r})"

    def body(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}
