"""A TCP forwarder on a loopback port of its own that can be cut and restored: a broker outage
as its clients see it, on the same address, while the broker behind it keeps its messages.

``cut()`` closes the listening socket (new connections are refused) and resets every open
connection (an RST, as from a host that went away); ``restore()`` listens again on the same
port. The emulators keep their state in memory, so stopping one would lose the messages a real
cloud queue keeps through an outage of its front end: with the forwarder, "nothing acknowledged
by ``delay()`` is lost" can be checked for real.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.fixtures.servers import free_port

ACCEPT_POLL_SECONDS = 0.1


class Forwarder:
    """``127.0.0.1:<port>`` -> ``target_host:target_port``; one thread per direction."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.connections = 0
        """Connections accepted so far (clients reconnected if this grows after a restore)."""
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the port and forward what comes in."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(ACCEPT_POLL_SECONDS)
        self._stop.clear()
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    restore = start

    def cut(self) -> None:
        """Stop listening and reset every open connection."""
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._stop.is_set():
                    _reset(client)
                    _reset(upstream)
                    return
                self._open.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                gone = src in self._open
                self._open.discard(src)
                self._open.discard(dst)
            if gone:
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets an RST, not an orderly end of stream. The read
    side is shut first, so that a pump thread blocked in ``recv`` on it wakes up."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
