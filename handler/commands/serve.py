"""A local HTTP endpoint that hands each request to `main_handler` as an SCF API Gateway event."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from handler.commands import EXIT_STATUS, Refused, UsageError, acting_runtime, one_line

if TYPE_CHECKING:
    from handler.app import Runtime
    from handler.config import Config


def apigw_event(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The SCF API Gateway integration-request event for one HTTP request."""
    parts = urlsplit(raw_path)
    query = dict(parse_qsl(parts.query))
    return {
        "requestContext": {"serviceId": "service-local", "path": parts.path, "httpMethod": method,
                           "requestId": uuid.uuid4().hex, "sourceIp": "127.0.0.1",
                           "stage": "release", "identity": {}},
        "headers": headers,
        "body": body.decode("utf-8", "surrogateescape"),
        "path": parts.path,
        "queryString": query,
        "queryStringParameters": query,
        "httpMethod": method,
        "headerParameters": {},
        "pathParameters": {},
        "stageVariables": {"stage": "release"},
    }


class _Server(ThreadingHTTPServer):
    """A thread per request, as ThreadingHTTPServer, with room for a topic's pushes arriving at
    once: the default listen backlog (5) resets the connections beyond it."""

    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    disable_nagle_algorithm = True
    time_limit_ms = 60000  # as deployed: serverless.yml gives the function 60 s
    runtime: Callable[[], Runtime] | None = None  # the parts to use instead of the environment's

    def _dispatch(self) -> None:
        from handler.app import handle
        from handler.ingress import MAX_BODY_BYTES

        if self.headers.get("Transfer-Encoding"):
            # Not read here: its chunks would otherwise be taken for the next request.
            return self._refuse(411, "send the body with a Content-Length")
        announced = self.headers.get("Content-Length")
        raw_length = "0" if announced is None else announced.strip()
        if not (raw_length.isascii() and raw_length.isdigit()):
            # Read nothing: a negative length would block the thread, junk would raise.
            return self._refuse(400, "Content-Length must be a non-negative whole number")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            # Decided from the header: the body is never read, so it costs neither time nor memory.
            return self._refuse(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length) if length else b""
        event = apigw_event(self.command, self.path, dict(self.headers.items()), body)
        context = {"request_id": uuid.uuid4().hex, "time_limit_in_ms": self.time_limit_ms,
                   "function_name": "batch-autoretry-local"}
        try:
            result = handle(event, context, platform="scf",
                            runtime=self.runtime() if self.runtime is not None else None)
        except Exception as e:  # the function's own log has the detail; the caller gets no text
            print(f"serve: request failed: {type(e).__name__}", file=sys.stderr, flush=True)
            result = {"statusCode": 500, "body": json.dumps({"error": "internal error"})}
        self._answer(int(result.get("statusCode", 200)), str(result.get("body", json.dumps(result))),
                     result.get("headers") or {"Content-Type": "application/json"})

    def _refuse(self, status: int, error: str) -> None:
        self.close_connection = True  # what the client still sends is not read: no reuse
        self._answer(status, json.dumps({"error": error}), {"Content-Type": "application/json",
                                                             "Connection": "close"})

    def _answer(self, status: int, body: str, headers: dict[str, str]) -> None:
        out = body.encode()
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(out))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)

    do_POST = _dispatch
    do_GET = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the function logs every decision itself


def start(host: str = "127.0.0.1", port: int = 0, runtime: Callable[[], Runtime] | None = None
          ) -> ThreadingHTTPServer:
    """Start the endpoint in a background thread (for the demo and tests). `runtime`, when given,
    supplies the parts each request is handled with."""
    handler = type("_Handler", (_Handler,), {"runtime": staticmethod(runtime)}) if runtime else _Handler
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROG = "python -m handler serve"


def _auth_mode(config: Config) -> str:
    methods = [name for name, value in (("token", config.auth_token),
                                         ("HMAC signature", config.auth_hmac_secret)) if value]
    if methods:
        return " or ".join(methods)
    if config.local:
        return "local: no credential asked (AUTORETRY_LOCAL=true)"
    return ("none configured: every POST is refused with 503 until AUTORETRY_AUTH_TOKEN or "
            "AUTORETRY_HMAC_SECRET is set")


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS)
    ap.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default 127.0.0.1; AUTORETRY_LOCAL defaults to "
                         "true only there)")
    ap.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected a port from 0 to 65535")
    # A local endpoint without a token is allowed only because it is explicitly local: reachable
    # from this machine alone. On any other interface a credential must be configured.
    if args.host in LOOPBACK:
        os.environ.setdefault("AUTORETRY_LOCAL", "true")

    from handler.config import Config
    from handler.ledger import describe_store

    config = Config.from_env()
    # Refused now, not answered with 503 later: a broken policy or store, or a ledger other than
    # the one AUTORETRY_LEDGER_ID names (every request checks it again, as the function does).
    acting_runtime(config)
    try:
        server = _Server((args.host, args.port), _Handler)
    except OSError as e:
        reason = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise Refused(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving main_handler on http://{shown_host}:{server.server_address[1]}/events "
          f"(store {describe_store(config.store)}; auth: {_auth_mode(config)})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
