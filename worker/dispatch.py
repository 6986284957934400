"""Sending the two tasks by name; the app's routes put them on its deployment's queues."""

from __future__ import annotations

from celery import Celery

SUBMIT_TASK = "pallycon.submit"
POLL_TASK = "pallycon.poll"


def send_submit(app: Celery, request_ids: list[str]) -> None:
    app.send_task(SUBMIT_TASK, args=[request_ids])


def send_poll(app: Celery, request_ids: list[str]) -> None:
    app.send_task(POLL_TASK, args=[request_ids])
