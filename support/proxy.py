"""A TCP proxy on loopback that a test controls: clients connect to it, it forwards to a
target (a Redis server), and :meth:`TcpProxy.cut` severs the path as a broken network would,
until :meth:`TcpProxy.restore`.

While cut, the proxy listens no more (a new connection is refused at once) and every connection
it was forwarding is closed at both ends (a client reading from one sees it end). Restored, it
listens again on the same port and forwards new connections; nothing from before the cut is
carried over. Threads of the test's process: one accepting, two per connection copying bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading

#: Bytes copied at a time.
CHUNK = 65536


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` (host, port); see the module's docstring."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0  # accepted so far, over every period it listened
        self.cuts = 0

    def url(self, redis_url: str) -> str:
        """``redis_url`` (the target's) with the proxy's port in place of the target's."""
        host, port = self.target
        suffix = f"{host}:{port}"
        assert suffix in redis_url, (redis_url, suffix)
        return redis_url.replace(suffix, f"127.0.0.1:{self.port}")

    def start(self) -> TcpProxy:
        """Listen (on a free port the first time, the same one after a cut) and forward."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> int:
        """Stop listening and close every forwarded connection: the number closed."""
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for sock in live:
            _close(sock)
        self.cuts += 1
        return len(live) // 2

    def restore(self) -> None:
        """Listen again on the same port."""
        self.start()

    def stop(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._copy, args=(source, sink), daemon=True).start()

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._sockets -= {source, sink}
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
