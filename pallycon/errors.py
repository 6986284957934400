"""Every error the PallyCon protocol layer raises, in one tree::

    PallyConError
    ├── InvalidRequest          a request body breaks a rule of the guide (field errors inside)
    ├── EnvelopeError           a pallycon-apidata value that does not verify (carries its A-code)
    └── CallError               a call to the API that did not succeed
        ├── ApiError            the API answered with an error code (A1000, A1007, ...)
        ├── HttpStatusError     the HTTP status was not 200
        │   ├── RateLimited     429, with the Retry-After it asked for
        │   └── ServerError     5xx
        ├── TransportError      the exchange itself failed
        │   ├── RequestNotSent  certainly before the request left (connect failed): safe to resend
        │   │   └── RequestNotBuilt  the request cannot even be built (URL too long): never resend
        │   └── OutcomeUnknown  after it may have arrived (read timeout, reset): reconcile first
        └── MalformedResponse   an answer that is not the guide's JSON
            └── ResponseTooLarge  an answer larger than allowed (ask for smaller pages)

A caller decides "retry, reconcile or fail" from the class and :attr:`CallError.retryable`;
nothing here retries by itself. Each class's :attr:`~PallyConError.meaning` says what it means in
one line; :func:`meaning_of` finds it by the class's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar


class PallyConError(Exception):
    """Base of every error of the protocol layer."""

    #: What the error means, in one line. Each class says its own: a call error's class name is
    #: what a failed request records as its code when it has no API code or HTTP status.
    meaning: ClassVar[str] = "an error of the PallyCon protocol layer"


@dataclass(frozen=True)
class FieldError:
    """One broken rule: where (dotted path) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidRequest(PallyConError):
    """A request body breaks a rule of the guide; :attr:`errors` names each field."""

    meaning = "the request breaks a rule of the Packaging API guide"

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


class EnvelopeError(PallyConError):
    """A ``pallycon-apidata`` value failed verification; :attr:`code` is the API error code."""

    meaning = "a pallycon-apidata value failed verification"

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class CallError(PallyConError):
    """A call to the API did not succeed."""

    meaning = "a call to the PallyCon API did not succeed"

    #: True when sending the same request again may succeed.
    retryable: bool = False


class ApiError(CallError):
    """The API answered with an error code other than ``0000``.

    :attr:`server_time` is the answer's ``Date`` header (epoch seconds) when it had one, and
    :attr:`skew` how far the clock that signed the request was ahead of it: with ``A1002``
    (timestamp refused) it tells how far this machine's clock is off. ``hint``, said
    after the message, is the likely cause on our side (a wrong key: A1006, A1007).
    """

    meaning = "the API answered with an error code"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        server_time: float | None = None,
        skew: float | None = None,
        hint: str = "",
    ) -> None:
        self.code = code
        self.message = message
        self.retryable = retryable
        self.server_time = server_time
        self.skew = skew
        super().__init__(f"{code}: {message}" + (f" ({hint})" if hint else ""))


class HttpStatusError(CallError):
    """The HTTP status was not 200 (4xx other than 429 are not retryable)."""

    meaning = "the API answered an HTTP status other than 200"

    def __init__(self, status_code: int, detail: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}" + (f": {detail}" if detail else ""))


class RateLimited(HttpStatusError):
    """HTTP 429; :attr:`retry_after` is the delay the server asked for, in seconds, if any."""

    meaning = "the API answered HTTP 429: too many requests"

    retryable = True

    def __init__(self, retry_after: float | None, detail: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(429, detail)


class ServerError(HttpStatusError):
    """HTTP 5xx. The request may have been processed: a non-idempotent call must reconcile."""

    meaning = "the API answered an HTTP 5xx status: the request may have been processed"

    retryable = True


class TransportError(CallError):
    """The HTTP exchange itself failed."""

    meaning = "the HTTP exchange with the API failed"

    retryable = True


class RequestNotSent(TransportError):
    """The request certainly never reached the server (connect error or timeout).

    :attr:`api` is where the API was called (its base URL, without credentials, query or
    fragment; "" when not known), for a message that names it; the message itself says why.
    """

    meaning = "the call never reached the API (it could not connect, or timed out connecting)"

    def __init__(self, message: str, *, api: str = "") -> None:
        super().__init__(message)
        self.api = api


class RequestNotBuilt(RequestNotSent):
    """The request could not be built (its URL is longer than the transport allows, say).

    Nothing was sent, and sending the same request again fails the same way.
    """

    meaning = (
        "the request cannot be built to be sent (too large, say): nothing was sent, and "
        "sending it again fails the same way"
    )

    retryable = False


class OutcomeUnknown(TransportError):
    """The request may have reached the server (read timeout, connection lost mid-exchange)."""

    meaning = (
        "the call may have reached the API, but its answer was lost (read timeout, connection lost)"
    )


class MalformedResponse(CallError):
    """The answer is not the JSON the guide describes, or is larger than allowed."""

    meaning = "the API's answer is not the JSON the guide describes"

    retryable = True


class ResponseTooLarge(MalformedResponse):
    """The answer was larger than ``limit`` bytes; reading stopped there."""

    meaning = "the API's answer was larger than allowed"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"response larger than {limit} bytes")


def meaning_of(name: str) -> str:
    """The :attr:`~PallyConError.meaning` of the class of this tree named ``name``; "" for none."""
    return next((kind.meaning for kind in _tree(PallyConError) if kind.__name__ == name), "")


def _tree(kind: type[PallyConError]) -> Iterator[type[PallyConError]]:
    """``kind`` and every class of this module below it."""
    yield kind
    for sub in kind.__subclasses__():
        if sub.__module__ == __name__:
            yield from _tree(sub)
