"""The Celery app instance, for ``celery -A pallycon_worker worker`` (and ``pallycon-pack worker``).

Settings are read here, at the entry point, and passed down; nothing below reads them again.
"""

from pallycon_config import load_settings
from pallycon_worker.tasks import create_app

app = create_app(load_settings())
