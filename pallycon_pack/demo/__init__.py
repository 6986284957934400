"""``pallycon-pack demo``: the whole product on a bare machine (:mod:`.command`), with what it
starts for itself: a private Redis-compatible server (:mod:`.redis_server`) and a worker
process (:mod:`.worker`)."""

from pallycon_pack.demo.command import demo

__all__ = ["demo"]
