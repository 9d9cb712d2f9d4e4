"""The HTTP face of the emulator: `POST /` with the API 3.0 headers, the TC3 signature checked, the
answer exactly `Content-Type: application/json` and errors inside a 200, as the real service does."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from emulator import cmq, scf, scf_url
from emulator.api import VERSION, ApiError
from emulator.models import check_request
from emulator.serving import send
from emulator.signing import AuthError, verify

if TYPE_CHECKING:
    from emulator import Emulator

MAX_BODY = 10 * 1024 * 1024


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: Emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets or drops its connection is routine (timeouts, the function's own
        # retries): no traceback. Anything else gets one line, not a traceback.
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            return
        print(f"emulator: a request from {client_address[0]} failed: {type(err).__name__}: {err}",
              file=sys.stderr)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per answer
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith(scf.URL_PATH):  # a function URL: the function answers
            scf_url.serve(self, self.server.emulator.scf, "GET")
            return
        self._send(200, {"emulator": "tencent-batch", "version": VERSION})

    def do_POST(self) -> None:
        if self.path.startswith(scf.URL_PATH):  # a function URL: the function answers
            scf_url.serve(self, self.server.emulator.scf, "POST")
            return
        emu = self.server.emulator
        request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        if self.path.partition("?")[0] == cmq.PATH:  # TDMQ-CMQ's data-flow API: its own signature
            self._send(200, emu.cmq.dataflow("POST", self.headers.get("Host", ""), cmq.PATH, body))
            return
        headers = {k: v for k, v in self.headers.items()}
        action = self.headers.get("X-TC-Action", "")
        region = self.headers.get("X-TC-Region", "")
        call: dict[str, Any] = {"t": time.time(), "action": action, "region": region, "params": None,
                                "error": None, "request_id": request_id, "fault": None}
        fault = emu.faults.draw(action)
        call["fault"] = fault
        if fault == "reset":
            emu.record(call | {"error": "fault:reset"})
            self._reset()
            return
        if fault == "timeout":
            emu.record(call | {"error": "fault:timeout"})
            time.sleep(emu.faults.timeout_s)
            self._reset()
            return
        try:
            answer = self._answer(emu, action, headers, body, call, fault)
        except ApiError as err:
            call["error"] = err.code
            answer = {"Error": {"Code": err.code, "Message": err.message}}
        except AuthError as err:
            call["error"] = err.code
            answer = {"Error": {"Code": err.code, "Message": str(err)}}
        emu.record(call)
        if fault == "lost_answer":
            self._reset()
            return
        if fault == "http_500":
            self._send(500, None, b"internal server error", "text/plain")
            return
        answer["RequestId"] = request_id
        self._send(200, {"Response": answer})

    def _answer(self, emu: Emulator, action: str, headers: dict[str, str], body: bytes,
                call: dict[str, Any], fault: str | None) -> dict[str, Any]:
        if self.headers.get("Content-Type") != "application/json":
            raise ApiError("InvalidParameter", "Content-Type must be application/json")
        service = emu.services.get(self.headers.get("X-TC-Version", ""))
        if service is None:
            raise ApiError("NoSuchVersion", f"X-TC-Version must be one of {sorted(emu.services)}")
        path, _, query = self.path.partition("?")
        verify(emu.secrets, "POST", path, query, headers, body, emu.clock(), service=service.name)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("InvalidParameter", "the body is not JSON") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "the body must be a JSON object")
        call["params"] = params
        if not emu.limiter.allow(action):
            raise ApiError("RequestLimitExceeded", f"{action} is limited; slow down")
        # What the gateway refuses (a field the SDK's models do not name, a value of the wrong type)
        # never reaches the service.
        check_request(service.name, self.headers.get("X-TC-Version", ""), action, params)
        if fault == "internal_error":
            raise ApiError("InternalError", "an internal error occurred")
        if fault == "throttle":
            raise ApiError("RequestLimitExceeded", f"{action} is limited; slow down")
        if fault == "http_500":
            return {}
        return service.handle(action, params)

    def _send(self, status: int, payload: object, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        send(self, status, {"Content-Type": content_type}, data)

    def _reset(self) -> None:
        # SO_LINGER 0: close with RST, the way a dropped connection looks to the client
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
