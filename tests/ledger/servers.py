"""A moto DynamoDB server on loopback for tests and benchmarks that span processes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class SerializedMotoServer:
    """moto's server, answering one request at a time.

    `moto.server.ThreadedMotoServer` runs each request on its own thread, and moto's
    TransactWriteItems checks conditions and writes without a lock (and on failure restores a deep
    copy of the whole table, undoing other requests' writes). Real DynamoDB serialises conflicting
    writes, so this server does too: one lock around moto, HTTP handled on threads as usual.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SerializedMotoServer:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(self._host, self._port, serialized, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach this server with boto3."""
        return {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
