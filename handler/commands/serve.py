"""A local HTTP endpoint that hands each request to `main_handler` as an SCF API Gateway event."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from handler.app import Runtime


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    disable_nagle_algorithm = True
    time_limit_ms = 60000  # as deployed: serverless.yml gives the function 60 s
    runtime: Callable[[], Runtime] | None = None  # the parts to use instead of the environment's

    def _dispatch(self) -> None:
        from handler.app import handle

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        event = apigw_event(self.command, self.path, dict(self.headers.items()), body)
        context = {"request_id": uuid.uuid4().hex, "time_limit_in_ms": self.time_limit_ms,
                   "function_name": "batch-autoretry-local"}
        result = handle(event, context, platform="scf",
                        runtime=self.runtime() if self.runtime is not None else None)
        status = int(result.get("statusCode", 200))
        out = str(result.get("body", json.dumps(result))).encode()
        self.send_response(status)
        for k, v in (result.get("headers") or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
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
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler serve", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args(argv)
    # A local endpoint without a token is allowed only because it is explicitly local.
    os.environ.setdefault("AUTORETRY_LOCAL", "true")
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    print(f"serving main_handler on http://{args.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
