"""A small HTTP fault proxy between the Tryton connector and the real trytond.

It forwards each JSON-RPC request to Tryton unchanged, unless a scripted fault
matches the request's JSON-RPC ``method`` (exactly, or ``"*"`` for any):

- ``status``: answer HTTP ``status`` (429, 500, 503, ...) WITHOUT forwarding: Tryton
  never sees the request (a throttling gateway or a crashed worker in front of it);
- ``fake_ok``: answer ``{"result": null}`` WITHOUT forwarding: a post Tryton "answered"
  and did not apply (what the connector's read-back is for);
- ``reset_after``: forward, let Tryton answer (it has committed), then reset the
  client's connection (TCP RST) instead of passing the answer on;
- ``hang_after``: forward, let Tryton answer, then hold the answer back until the
  client gives up (a read time-out after the commit);
- ``delay``: forward and pass the answer on ``seconds`` late (a slow answer; ``holding``
  counts the answers held back at this moment).

Each fault fires ``count`` times (after letting ``after`` matching requests through),
first matching first. ``seen`` lists every
method the proxy received, ``forwarded`` those that reached Tryton.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

import requests

FaultKind = Literal["status", "fake_ok", "reset_after", "hang_after", "delay"]


@dataclass
class Fault:
    kind: FaultKind
    method: str = "*"
    count: int = 1
    status: int = 500
    seconds: float = 0.0
    after: int = 0  # matching requests let through untouched before the fault fires


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.seen: list[str] = []
        self.forwarded: list[str] = []
        self.holding = 0  # answers held back right now by a "delay" fault (Tryton has answered)
        self.lock = threading.Lock()
        self._http = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client resetting or giving up on purpose is what these tests do

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address is (str, int), never bytes
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, kind: FaultKind, method: str = "*", **kwargs: object) -> None:
        with self.lock:
            # kwargs are Fault's own fields (count, status, seconds, after), given by name
            self.faults.append(Fault(kind, method, **kwargs))  # type: ignore[arg-type]

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take(self, method: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.method in ("*", method):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.count -= 1
                    return fault
        return None

    def _session(self) -> requests.Session:
        session = getattr(self._http, "session", None)
        if session is None:
            session = self._http.session = requests.Session()
        return session

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        try:
            method = str(json.loads(body).get("method", ""))
        except ValueError:
            method = ""
        with self.lock:
            self.seen.append(method)
        fault = self._take(method)
        if fault is not None and fault.kind == "status":
            self._answer(handler, fault.status, b'{"error": "injected"}')
            return
        if fault is not None and fault.kind == "fake_ok":
            request_id = json.loads(body).get("id")
            self._answer(handler, 200, json.dumps({"id": request_id, "result": None}).encode())
            return
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() not in {"host", "content-length", "connection"}
        }
        path = urlsplit(handler.path).path
        upstream = self._session().post(
            f"{self.upstream}{path}", data=body, headers=headers, timeout=120
        )
        with self.lock:
            self.forwarded.append(method)
        if fault is not None and fault.kind == "reset_after":
            sock = handler.connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "hang_after":
            # hold the answer until the client has given up and closed its side
            handler.connection.settimeout(fault.seconds or 60.0)
            try:
                while handler.connection.recv(1024):
                    pass
            except OSError:
                pass
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "delay":
            with self.lock:
                self.holding += 1
            try:
                time.sleep(fault.seconds)
            finally:
                with self.lock:
                    self.holding -= 1
        self._answer(handler, upstream.status_code, upstream.content)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, content: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:  # the client gave up already (its time-out)
            handler.close_connection = True
