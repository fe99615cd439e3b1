"""A tiny OpenAI-compatible server for load-test tests: streams `max_tokens` one-word chunks,
and misbehaves on request: model "error-chunk" sends an error event mid-stream, "cut" drops
the connection mid-stream, "no-done" ends cleanly but without [DONE]."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASE = "fake-base"
ADAPTERS = ("lora-a", "error-chunk", "cut", "no-done")
TOKEN_DELAY_S = 0.002


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs hold small chunks back ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {})
        elif self.path == "/v1/models":
            models = [{"id": BASE, "object": "model", "parent": None}]
            models += [{"id": a, "object": "model", "parent": BASE} for a in ADAPTERS]
            self._json(200, {"object": "list", "data": models})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self._json(404, {"error": {"message": "not found"}})
        elif body.get("model") not in (BASE, *ADAPTERS):
            self._json(404, {"error": {"message": f"model {body.get('model')} not found"}})
        elif body.get("stream"):
            self._stream(body, chat)
        else:
            n = body["max_tokens"]
            text = " ".join(["tok"] * n)
            choice = {"index": 0, "finish_reason": "length"}
            message = {"role": "assistant", "content": text}
            choice |= {"message": message} if chat else {"text": text}
            usage = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
            self._json(200, {"id": "x", "choices": [choice], "usage": usage})

    def _stream(self, body: dict[str, Any], chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        model, n = body["model"], body["max_tokens"]
        if chat:
            self._event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for i in range(n):
            time.sleep(TOKEN_DELAY_S)
            if i == n // 2 and model == "error-chunk":
                self._event({"error": {"message": "replica failed", "type": "internal_error"}})
                return self._end()
            if i == n // 2 and model == "cut":
                self.wfile.flush()
                self.close_connection = True
                return None
            last = i == n - 1
            piece = {"content": "tok "} if chat else None
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            choice |= {"delta": piece} if chat else {"text": "tok "}
            self._event({"choices": [choice]})
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
            self._event({"choices": [], "usage": usage})
        if model != "no-done":
            self._chunk(b"data: [DONE]\n\n")
        return self._end()

    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that stop mid-stream (the load test ending) are expected


@contextmanager
def fake_openai_server() -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
