"""A local webhook receiver for the end-to-end tests: records every request, fails the first ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """What the receiver got: (headers, body) per request, and how many to refuse first."""

    fail_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def receiver(fail_first: int = 0) -> Iterator[tuple[str, Received]]:
    """A receiver on 127.0.0.1: its URL and what it receives (the first ``fail_first`` get a 503)."""
    received = Received(fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with received.lock:
                received.requests.append((dict(self.headers.items()), body))
                refuse = len(received.requests) <= received.fail_first
            self.send_response(503 if refuse else 204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/flowdeck", received
    finally:
        server.shutdown()
        server.server_close()
