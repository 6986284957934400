"""Private Redis-compatible servers for the tests: one server (the demo's own,
:mod:`pallycon_pack.demo.redis_server`) and a Sentinel group of them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from pallycon_pack.demo.redis_server import RedisServer, answers, free_port, server_binary

__all__ = ["MASTER_NAME", "RedisServer", "SentinelGroup", "answers", "free_port", "server_binary"]


#: The name the sentinels of :class:`SentinelGroup` know the primary by.
MASTER_NAME = "mymaster"


class SentinelGroup:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels (quorum: a majority), all
    from the same binary, on 127.0.0.1, with fast failure detection (1 s) for tests.

    ``url`` is the primary's at start (for the database number); clients find the current
    primary through :attr:`nodes` (``PALLYCON_REDIS_SENTINELS``)."""

    def __init__(self, directory: Path, *, replicas: int = 2, sentinels: int = 3) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary")
        origin = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replicas = [
            RedisServer(directory / f"replica-{n}", extra=origin) for n in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return self.primary.url

    @property
    def nodes(self) -> str:
        """The sentinels as ``PALLYCON_REDIS_SENTINELS`` wants them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self, timeout: float = 20.0) -> SentinelGroup:
        try:
            self.primary.start()
            for replica in self.replicas:
                replica.start()
            for n, port in enumerate(self.sentinel_ports):
                self.sentinel_processes.append(self._sentinel(n, port))
            self._wait_watching(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel(self, n: int, port: int) -> subprocess.Popen[bytes]:
        home = self.directory / f"sentinel-{n}"
        home.mkdir(parents=True, exist_ok=True)
        quorum = len(self.sentinel_ports) // 2 + 1
        config = home / "sentinel.conf"  # a sentinel rewrites its own file: one each
        config.write_text(
            f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {home}\n"
            f"logfile {home / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
        )
        # Our binary and our file.
        return subprocess.Popen(  # noqa: S603
            [server_binary(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def sentinel_client(self, n: int = 0) -> redis.Redis:
        return redis.Redis(
            port=self.sentinel_ports[n], socket_timeout=1, socket_connect_timeout=1,
            decode_responses=True,
        )  # fmt: skip

    def master_address(self) -> tuple[str, int] | None:
        """The primary as a majority of the sentinels name it now, or None."""
        named: dict[tuple[str, int], int] = {}
        for n in range(len(self.sentinel_ports)):
            try:
                reply = self.sentinel_client(n).sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, OSError):
                continue
            if isinstance(reply, tuple | list) and len(reply) == 2:
                address = (str(reply[0]), int(reply[1]))
                named[address] = named.get(address, 0) + 1
        for address, votes in named.items():
            if votes > len(self.sentinel_ports) // 2:
                return address
        return None

    def _wait_watching(self, timeout: float) -> None:
        """Until every sentinel sees the primary, its replicas and the other sentinels, and
        every replica is online."""
        deadline = time.monotonic() + timeout
        want_replicas, want_others = len(self.replicas), len(self.sentinel_ports) - 1
        while time.monotonic() < deadline:
            ready = 0
            for n in range(len(self.sentinel_ports)):
                try:
                    info = self.sentinel_client(n).sentinel_master(MASTER_NAME)
                except (redis.RedisError, OSError):
                    continue
                if isinstance(info, dict) and (
                    int(info.get("num-slaves", 0)) >= want_replicas
                    and int(info.get("num-other-sentinels", 0)) >= want_others
                ):
                    ready += 1
            if ready == len(self.sentinel_ports) and self._replicas_online():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the sentinels did not see the whole group within {timeout} s")

    def _replicas_online(self) -> bool:
        """Every replica has synced (a replica still syncing cannot acknowledge a WAIT)."""
        from pallycon_pack.health import online_replicas  # as `health` counts them

        try:
            with redis.Redis(port=self.primary.port, socket_timeout=1) as client:
                info = client.info("replication")
        except (redis.RedisError, OSError):
            return False
        return online_replicas(info) == len(self.replicas)

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL whichever server is the primary now; its address."""
        address = self.master_address()
        assert address is not None, "no primary named by the sentinels"
        for server in (self.primary, *self.replicas):
            if server.port == address[1]:
                server.kill()
                return address
        raise AssertionError(f"the primary {address} is not one of ours")

    def stop(self) -> None:
        for process in self.sentinel_processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.sentinel_processes = []
        for server in (*self.replicas, self.primary):
            server.stop()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
