"""The logger aiohttp's request handler uses on the intake's port: malformed HTTP in one line, not a traceback.

aiohttp logs a request it cannot parse (a NUL byte in a header, a bad chunk size, an over-long line) with
``logger.exception``: an ERROR and a full traceback, for something the *client* got wrong, before any authentication.
Any client could fill the operator's log with tracebacks that way, and a traceback in the log reads as an operator
bug (the end-to-end tests treat it as one). Found by fuzzing (issue 13, item 11: schemathesis' probe sends a NUL).
The client still gets aiohttp's 400; every other exception keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

#: Characters of aiohttp's description kept in the log line (it quotes the offending request line or header).
_MAX_DETAIL = 200


class _ProtocolLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(error, HttpProcessingError):
            detail = " ".join(str(error.message).split())[:_MAX_DETAIL]
            what = str(msg) % args if args else str(msg)
            self.logger.info("%s: malformed HTTP request refused with %d: %s", what, error.code, detail)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def protocol_logger() -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """aiohttp's ``aiohttp.server`` logger, with malformed requests demoted to one INFO line."""
    return _ProtocolLogger(logging.getLogger("aiohttp.server"), {})
