"""One exception family for the domain, mapped once per protocol at each edge.

The platform API maps them to problem JSON, 2030.5 to an <Error> document, OpenADR to a
problem object, OPC UA to a status code, Modbus to an exception code.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every domain error. `status` is the HTTP-like class of the failure."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class InvalidInput(GatewayError):
    status = 400
    title = "Invalid input"


class Unprocessable(GatewayError):
    status = 422
    title = "Unprocessable instruction"


class Unauthenticated(GatewayError):
    status = 401
    title = "Not authenticated"


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"


class NotFound(GatewayError):
    status = 404
    title = "Not found"


class Conflict(GatewayError):
    status = 409
    title = "Conflict"


class Unavailable(GatewayError):
    status = 503
    title = "Unavailable"


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Payload too large"


class TooManyRequests(GatewayError):
    """Throttled; `retry_after_s` says when to try again (the edge sends Retry-After)."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str = "", retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
