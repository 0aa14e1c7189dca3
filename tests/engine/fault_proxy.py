"""A TCP proxy in front of the real Triton that can turn faulty on command (a test peer).

Modes, switchable at any time:

* ``forward``: bytes pass both ways, unchanged;
* ``blackhole``: the proxy accepts connections, and holds them: nothing is read or answered
  (a hung server), and live forwarded connections stop forwarding too (one whose bytes were
  swallowed is closed once the mode changes, as a server restart would);
* ``reset``: every new connection, and every live one at its next byte, is closed with a
  TCP RST (SO_LINGER 0).

Plain threads and blocking sockets: it runs in the pytest process, beside the gevent
transports under test, and in front of Locust subprocesses.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

MODES = ("forward", "blackhole", "reset")
_RST = struct.pack("ii", 1, 0)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``upstream``."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port = port
        self.upstream = upstream
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._listener.close()
        with self._lock:
            for sock in self._held:
                sock.close()
            self._held.clear()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "reset":
                _reset(client)
            elif self.mode == "blackhole":
                with self._lock:
                    self._held.append(client)
            else:
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
        except OSError:
            _reset(client)
            return
        for sock in (client, server):
            sock.settimeout(0.1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy source → sink while forwarding; hold or reset on the mode's say."""
        while not self._stopped.is_set():
            if self.mode == "blackhole":
                time.sleep(0.05)  # hold: read nothing, answer nothing
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if self.mode == "blackhole":  # turned while this read waited: swallow it,
                while self.mode == "blackhole" and not self._stopped.is_set():
                    time.sleep(0.05)  # hang, and then drop the broken stream
                break
            if self.mode == "reset":
                _reset(source)
                _reset(sink)
                return
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass
