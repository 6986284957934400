"""The PallyCon Packaging API: pure signing, models and code tables, plus the HTTP client.

No Redis and no Celery here: this package speaks the vendor protocol and nothing else, so that
a second API version can sit beside it.
"""
