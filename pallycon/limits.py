"""The sizes the protocol holds requests to, in a module of constants alone (the CLI's help
reads them without loading the models)."""

from __future__ import annotations

#: The longest URL httpx builds (``httpx._urlparse.MAX_URL_LENGTH``); a longer one is refused
#: before anything is sent.
MAX_URL_LENGTH = 65_536
#: The largest API JSON sent in a form body, where no URL limits it: a ceiling of our own.
MAX_FORM_API_JSON_BYTES = 128 * 1024
