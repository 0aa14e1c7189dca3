"""An h2 server as the peer of the lean gRPC wire client (test_grpc_wire.py, test_wire_fuzz.py).

h2 checks every frame the client sends (flow control, stream states, SETTINGS and PING
acknowledgements) and raises on a protocol violation, which `Peer.close` reports.
"""

from __future__ import annotations

import socket
import threading
import traceback

import h2.config
import h2.connection
import h2.events
import h2.settings

from tritonload.wire.grpc_wire import GrpcConnection

OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


class Peer:
    """An h2 server on one end of a socket pair; ``answer(conn, stream, body)`` scripts it.

    Given ``sock`` (a server socket a listener accepted), it serves that instead, and the
    client is whoever connected. A subclass may override `respond`; once it sets
    ``ignoring`` (it went off the protocol: closed, stalled, sent a GOAWAY), the peer reads
    and drops whatever the client still sends, until the client closes.
    """

    def __init__(self, answer=None, window: int = 65535, frame: int = 16384,
                 sock: socket.socket | None = None) -> None:
        self.answer = answer
        if sock is None:
            self.client_sock, self.sock = socket.socketpair()
        else:
            self.client_sock, self.sock = None, sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: frame})
        self.requests: list[tuple[dict, bytes]] = []
        self.events: list[object] = []
        self.error: str | None = None
        self.ignoring = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.conn.initiate_connection()
            self.sock.sendall(self.conn.data_to_send())
            bodies: dict[int, bytearray] = {}
            headers: dict[int, dict] = {}
            while data := self.sock.recv(65536):
                if self.ignoring:
                    continue
                for event in self.conn.receive_data(data):
                    self.events.append(event)
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = dict(event.headers)
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                            event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        body = bytes(bodies.pop(event.stream_id))
                        self.requests.append((headers.pop(event.stream_id), body))
                        self.respond(event.stream_id, body)
                        if self.ignoring:
                            break
                self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass  # the client closed its end
        except BaseException:  # a protocol violation by the client
            self.error = traceback.format_exc()

    def respond(self, stream: int, body: bytes) -> None:
        """Answer one complete request (h2 sends what it queued once this returns)."""
        self.answer(self.conn, stream, body)

    def client(self) -> GrpcConnection:
        self.client_sock.settimeout(5)  # a dead peer fails the test instead of hanging it
        return GrpcConnection(self.client_sock)

    def close(self) -> None:
        if self.client_sock is not None:
            self.client_sock.close()
        self.thread.join(5)
        self.sock.close()
        assert not self.thread.is_alive(), "the peer did not see the client close"
        assert self.error is None, f"the peer failed: {self.error}"
