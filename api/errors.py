"""XRPC errors: an HTTP status plus ``{"error": <name>, "message": <text>}`` (atproto.com/specs/xrpc).

Handlers raise these; the app turns them into responses. Anything else that escapes a handler is a
bug and becomes a 500 ``InternalServerError`` without details.
"""

from __future__ import annotations


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
