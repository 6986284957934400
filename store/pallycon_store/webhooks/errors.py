"""The webhook exception tree::

    WebhookError
     ├── MalformedSecret      a secret that is not ``whsec_`` + base64 of 24 to 64 bytes
     ├── MalformedEndpoint    an endpoint's URL, events or site cannot be used
     ├── RefusedAddress       a host resolves to an address deliveries may not reach (SSRF)
     └── UnknownEndpoint      no endpoint of that id

Messages name what is wrong, never a secret's value.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Something about a webhook endpoint or delivery is wrong; the message says what."""


class MalformedSecret(WebhookError):
    """A webhook secret that cannot be used (the message never holds the secret)."""


class MalformedEndpoint(WebhookError):
    """An endpoint's URL, event filter or site that cannot be used."""


class RefusedAddress(WebhookError):
    """A host that resolves to an address deliveries may not connect to."""


class UnknownEndpoint(WebhookError):
    """No endpoint has that id."""


class UnreadableSecret(WebhookError):
    """A stored secret that does not decrypt with the configured key (changed, or damaged)."""
