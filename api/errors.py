"""XRPC errors: an HTTP status plus ``{"error": <name>, "message": <text>}`` (atproto.com/specs/xrpc).

Handlers raise these; the app turns them into responses. Anything else that escapes a handler is a
bug and becomes a 500 ``InternalServerError`` without details.
"""

from __future__ import annotations

from typing import Any


class XrpcError(Exception):
    """An error a client can act on."""

    status = 400
    error = "InvalidRequest"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Response headers the error needs (WWW-Authenticate, Retry-After).
        self.headers = headers

    def body(self) -> dict[str, str]:
        """The response body."""
        return {"error": self.error, "message": self.message}


class InvalidRequest(XrpcError):
    """A parameter is missing, malformed or out of range (also a bad cursor)."""


class NotFound(XrpcError):
    """The thing asked for is not indexed or not visible."""

    status = 404
    error = "NotFound"


class PaymentRequired(XrpcError):
    """Supporter-gated content this deployment does not serve publicly."""

    status = 402
    error = "SupporterOnly"


class AuthenticationRequired(XrpcError):
    """No credentials, or wrong ones (the admin API's bearer token)."""

    status = 401
    error = "AuthenticationRequired"


class RateLimitExceeded(XrpcError):
    """Too many failed attempts from this address; ``Retry-After`` says when to try again."""

    status = 429
    error = "RateLimitExceeded"


class PayloadTooLarge(XrpcError):
    """A request body over the limit (api/limits.py)."""

    status = 413
    error = "PayloadTooLarge"


class Unavailable(XrpcError):
    """A dependency (database, upstream) cannot answer now."""

    status = 503
    error = "Unavailable"


# What each status means to a client, for the OpenAPI document.
_MEANING = {
    400: "InvalidRequest: a parameter is missing, malformed or out of range",
    402: "SupporterOnly: supporter-gated audio this deployment does not serve publicly",
    404: "NotFound: not indexed or not visible",
    413: "PayloadTooLarge: a request body over the limit",
    414: "InvalidRequest: a query string over the limit",
    429: "RateLimitExceeded: too many requests from this address (Retry-After says when to try again)",
    502: "UpstreamFailure: the artist's identity or PDS cannot be used",
    503: "Unavailable: the database or an upstream cannot answer now (Retry-After says when to try again)",
}
# Every public route can answer these: bad input, the request limits (api/limits.py), and a database
# that is down, slow or saturated (api/backpressure.py).
COMMON_STATUSES = (400, 414, 429, 503)


def openapi_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for ``statuses``, each with the XRPC error body, so a client (and a schema
    checker) knows every error's shape."""
    body = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    }
    return {
        str(status): {"description": _MEANING[status], "content": {"application/json": {"schema": body}}}
        for status in statuses
    }
