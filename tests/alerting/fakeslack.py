"""A fake Slack API on loopback (real HTTP): Web API methods, incoming webhooks, and faults on demand.

``FakeSlack.fail(kind, times)`` makes the next ``times`` requests answer with ``kind``:
``"429"`` (ratelimited, Retry-After: 1), ``"500"``, ``"invalid_auth"``, ``"channel_not_found"``,
``"no_service"`` (webhook 404), ``"invalid_blocks"`` (a form error: webhook 400). ``down = True``
answers every request with 503 until cleared.

Like Slack, the fake refuses a message that breaks Block Kit's documented limits (:class:`Limits`)
with ``invalid_blocks`` (``msg_too_long`` for the text); a test may lower the limits to stand in
for a Slack that counts more strictly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-" + "0" * 10 + "-fake-test-token"
WEBHOOK_PATH = "/services/TFAKE/BFAKE/" + "w" * 24


@dataclass
class Limits:
    """Slack's documented limits, in characters of the text as sent."""

    header: int = 150
    section: int = 3000
    field: int = 2000
    fields: int = 10
    context_elements: int = 10
    element: int = 3000
    blocks: int = 50
    text: int = 40_000


def form_error(body: dict[str, Any], limits: Limits) -> str | None:
    """The error Slack answers for ``body``'s form, or None when Slack would accept it."""
    if len(str(body.get("text") or "")) > limits.text:
        return "msg_too_long"
    blocks = body.get("blocks") or []
    if not isinstance(blocks, list) or len(blocks) > limits.blocks:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type")
        texts: list[tuple[str, int]] = []
        if kind == "header":
            texts.append((block["text"]["text"], limits.header))
        elif kind == "section":
            if "text" in block:
                texts.append((block["text"]["text"], limits.section))
            fields = block.get("fields") or []
            if len(fields) > limits.fields:
                return "invalid_blocks"
            texts += [(f["text"], limits.field) for f in fields]
        elif kind == "context":
            elements = block.get("elements") or []
            if len(elements) > limits.context_elements:
                return "invalid_blocks"
            texts += [(e["text"], limits.element) for e in elements]
        else:
            return "invalid_blocks"
        if any(not text or len(text) > limit for text, limit in texts):
            return "invalid_blocks"
    return None


@dataclass
class Request:
    """One recorded request."""

    path: str
    auth: str | None
    body: dict[str, Any]


@dataclass
class FakeSlack:
    """State of the fake; the server thread writes, tests read."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    down: bool = False
    delay_s: float = 0.0
    ts_counter: int = 0
    limits: Limits = field(default_factory=Limits)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def fail(self, kind: str, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([kind] * times)

    def posted(self, method: str = "chat.postMessage") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith(method)]


def _handler(state: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/json" if not isinstance(body, str) else "text/plain"
            )
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                body = json.loads(raw or "{}")
            else:
                body = {k: v[0] for k, v in parse_qs(raw).items()}
                if "blocks" in body:
                    body["blocks"] = json.loads(body["blocks"])
            if state.delay_s:
                time.sleep(state.delay_s)
            webhook = self.path.startswith("/services/")
            with state.lock:
                state.requests.append(Request(self.path, self.headers.get("Authorization"), body))
                fault = state.faults.pop(0) if state.faults else None
                state.ts_counter += 1
                ts = f"1753178400.{state.ts_counter:06d}"
            if state.down:
                return self._reply(503, "service unavailable")
            if fault == "429":
                return self._reply(
                    429,
                    {"ok": False, "error": "ratelimited"} if not webhook else "rate_limited",
                    {"Retry-After": "1"},
                )
            if fault == "500":
                return self._reply(500, "internal error")
            refused = form_error(body, state.limits)
            if webhook:
                if fault in ("no_service", "invalid_auth", "channel_not_found"):
                    return self._reply(404 if fault == "no_service" else 403, fault)
                if self.path != WEBHOOK_PATH:
                    return self._reply(404, "no_service")
                if fault or refused:
                    return self._reply(400, fault or refused)
                return self._reply(200, "ok")
            if fault or self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(200, {"ok": False, "error": fault or "invalid_auth"})
            if refused:
                return self._reply(200, {"ok": False, "error": refused})
            return self._reply(200, {"ok": True, "channel": "C0FAKE", "ts": body.get("ts") or ts})

    return Handler


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    """Run a fake Slack API on 127.0.0.1:<free port> for the duration of the block."""
    state = FakeSlack()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
