"""The queue worker (Celery on Redis): tasks, poll schedule, request state, result channel."""
