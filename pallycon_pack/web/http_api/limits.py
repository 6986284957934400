"""The HTTP API's fixed bounds (the per-token limits are settings: :mod:`.settings`)."""

from __future__ import annotations

#: The most requests one batch takes: recorded in one ``Producer.submit_many`` call, so one
#: atomic step (all or nothing), one transaction and one fsync.
MAX_BATCH = 500
#: A page of ``GET /v1/requests``: by default, and at most.
DEFAULT_PAGE = 50
MAX_PAGE = 500
#: The longest cancel reason taken (the record keeps its first 200 characters).
MAX_REASON = 500
#: The most records one page of ``GET /v1/requests`` reads: a token whose sites' requests are
#: few among many others' gets shorter pages (even empty ones, with ``next``), never a scan.
MAX_READ = 2000
