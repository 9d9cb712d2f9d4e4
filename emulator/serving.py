"""What the emulator's HTTP servers (the Batch API's and the webhook receiver's) share: serving on
a background thread, and writing one whole answer."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from socketserver import BaseServer


def serve_in_background(server: BaseServer, name: str) -> threading.Thread:
    """Serve until `server.shutdown()`, on a daemon thread that polls often, so shutdown is quick."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                              daemon=True)
    thread.start()
    return thread


def send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    """The answer to `handler`'s request: `status`, `headers`, and `body` with its Content-Length."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
