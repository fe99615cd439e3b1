"""Safe at the edge, on a real Serve app: slow and oversize requests, huge prompts, and a
Router replica that dies mid-stream. Raw sockets where a client misbehaves."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import ray

from tests.deployments.serve_harness import API_KEY, ServedApp, running_app, small_app_args

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

MODEL = "tiny-chat"
BODY_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 3.0
MAX_BODY = 1_000_000
MAX_RUNNING, MAX_WAITING = 16, 2
# the Router takes max_running + max_waiting + 64 requests at once; more slow clients than
# that would leave no room for anyone if a slow body held a Router slot
NUM_SLOW_CLIENTS = MAX_RUNNING + MAX_WAITING + 64 + 8
AUTH = {"Authorization": f"Bearer {API_KEY}"}
STALL_S = 1.0  # longest pause a stream or /health may see (2 shared cores in CI)


@pytest.fixture(scope="module")
def app(served_model_dir: Path):
    edge = {
        "max_body_bytes": MAX_BODY,
        "body_timeout_s": BODY_TIMEOUT_S,
        "header_timeout_s": HEADER_TIMEOUT_S,
    }
    args = small_app_args(
        str(served_model_dir),
        router={"max_running": MAX_RUNNING, "max_waiting": MAX_WAITING, "edge": edge},
    )
    proxy_env = {
        "TANDEM_MAX_BODY_BYTES": str(MAX_BODY),
        "TANDEM_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "TANDEM_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "TANDEM_API_KEYS": API_KEY,
    }
    with running_app(args, proxy_env=proxy_env) as served:
        yield served


def address(app: ServedApp) -> tuple[str, int]:
    host, port = app.base_url.removeprefix("http://").split(":")
    return host, int(port)


@contextmanager
def raw_request(
    app: ServedApp, head: str, body: bytes = b"", timeout_s: float = 20.0
) -> Iterator[socket.socket]:
    """A socket that sent `head` (request line and headers, no blank line added) and
    `body`, and sends nothing more."""
    sock = socket.create_connection(address(app), timeout=timeout_s)
    try:
        sock.sendall(head.encode() + body)
        yield sock
    finally:
        sock.close()


def post_head(length: int | None, with_key: bool = True, path: str = "/v1/completions") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: tandem", "Content-Type: application/json"]
    if with_key:
        lines.append(f"Authorization: Bearer {API_KEY}")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return "\r\n".join(lines) + "\r\n\r\n"


def read_status(sock: socket.socket) -> tuple[int | None, float]:
    """The response's status (None: closed without one) and when it came."""
    start = time.monotonic()
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - start
    if not data.startswith(b"HTTP/1.1 "):
        return None, elapsed
    return int(data.split()[1]), elapsed


def completion(app: ServedApp, **body) -> httpx.Response:
    request = {"model": MODEL, "prompt": "def add(a, b):", "max_tokens": 4, **body}
    return httpx.post(f"{app.base_url}/v1/completions", json=request, headers=AUTH, timeout=30)


def test_slow_bodies_do_not_starve_others_and_time_out(app):
    with ExitStack() as stack:
        slow = [
            stack.enter_context(raw_request(app, post_head(100), b'{"mod'))
            for _ in range(NUM_SLOW_CLIENTS)
        ]
        opened = time.monotonic()
        time.sleep(0.3)
        start = time.monotonic()
        ok = completion(app)
        assert ok.status_code == 200, ok.text
        assert time.monotonic() - start < BODY_TIMEOUT_S / 2  # not after the slow ones expire
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda s: read_status(s)[0], slow))
        waited = time.monotonic() - opened
    assert statuses == [408] * NUM_SLOW_CLIENTS
    assert waited < BODY_TIMEOUT_S + 3.0


def test_no_key_is_refused_before_the_body_arrives(app):
    with raw_request(app, post_head(1000, with_key=False), b"{") as sock:
        status, elapsed = read_status(sock)
    assert status == 401 and elapsed < 1.0


def test_oversize_bodies_get_413(app):
    with raw_request(app, post_head(MAX_BODY + 1)) as sock:  # declared: refused unread
        status, elapsed = read_status(sock)
    assert status == 413 and elapsed < 1.0
    chunk = b"x" * 65536
    framed = (f"{len(chunk):x}\r\n").encode() + chunk + b"\r\n"
    with raw_request(app, post_head(None)) as sock:  # chunked: counted as it arrives
        try:
            for _ in range(MAX_BODY // len(chunk) + 2):
                sock.sendall(framed)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still sending: the status is already on its way
        status, _ = read_status(sock)
    assert status == 413
    big = completion(app, prompt="x" * MAX_BODY)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_slow_headers_are_cut_off(app):
    with raw_request(app, "POST /v1/completions HTTP/1.1\r\nHost: tandem\r\n") as sock:
        status, elapsed = read_status(sock)
    assert status is None  # closed without reading a request
    assert HEADER_TIMEOUT_S - 0.5 < elapsed < HEADER_TIMEOUT_S + 3.0
    assert completion(app).status_code == 200  # a finished request's connection is not cut


def stream_gaps(app: ServedApp, max_tokens: int, started: threading.Event) -> list[float]:
    body = {"model": MODEL, "prompt": "def add(a, b):", "max_tokens": max_tokens}
    body |= {"stream": True, "ignore_eos": True}
    gaps, last = [], None
    url = f"{app.base_url}/v1/completions"
    with httpx.stream("POST", url, json=body, headers=AUTH, timeout=60) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            now = time.monotonic()
            if last is not None:
                gaps.append(now - last)
            last = now
            started.set()
            assert "error" not in line
    return gaps


def test_huge_prompts_stall_neither_streams_nor_health(app):
    started = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        stream = pool.submit(stream_gaps, app, 150, started)
        assert started.wait(30)
        prompt = "def add(a, b):\n    return a + b\n" * (MAX_BODY // 40)  # ~0.8 MB each
        huge = [pool.submit(completion, app, prompt=prompt) for _ in range(3)]
        health = []
        for _ in range(10):
            start = time.monotonic()
            assert httpx.get(f"{app.base_url}/health", timeout=10).status_code == 200
            health.append(time.monotonic() - start)
            time.sleep(0.05)
        refused = [f.result() for f in huge]
        gaps = stream.result()
    # tokenized on the loop, each of these prompts would stall everything for seconds
    assert max(health) < STALL_S, health
    assert max(gaps) < STALL_S, max(gaps)
    assert all(r.status_code == 400 for r in refused)
    assert refused[0].json()["error"]["param"] == "prompt"
    assert "characters" in refused[0].json()["error"]["message"]  # refused untokenized


def router_actor() -> ray.actor.ActorHandle:
    (name,) = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "#Router#" in a["name"]
    ]
    return ray.get_actor(name, namespace="serve")


def test_a_dead_router_replicas_requests_are_aborted(app):
    llm = app.handle("LLMServer")
    body = json.dumps(
        {"model": MODEL, "prompt": "def", "max_tokens": 240, "stream": True, "ignore_eos": True}
    ).encode()
    sockets = []
    with ExitStack() as stack:
        for _ in range(MAX_RUNNING):
            sockets.append(stack.enter_context(raw_request(app, post_head(len(body)), body)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = llm.stats.remote().result()
            if stats.num_running + stats.num_waiting == MAX_RUNNING:
                break
            time.sleep(0.05)
        assert stats.num_running + stats.num_waiting == MAX_RUNNING
        ray.kill(router_actor())
        killed = time.monotonic()
        while time.monotonic() - killed < 20:
            stats = llm.stats.remote().result()
            if stats.num_running == stats.num_waiting == 0:
                break
            time.sleep(0.1)
        drained = time.monotonic() - killed
        endings = [last_event(read_response(sock)) for sock in sockets]
    assert stats.num_running == stats.num_waiting == 0
    assert stats.num_free_blocks == stats.num_total_blocks
    assert drained < 3.0
    assert llm.num_orphans_aborted.remote().result() >= MAX_RUNNING - 4
    # the proxy, still up, told every client its stream was cut off
    assert all(e.startswith(b'data: {"error"') and b"stream_cut_off" in e for e in endings)


def read_response(sock: socket.socket) -> bytes:
    """A chunked response up to its last chunk (or until the server closes)."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def last_event(response: bytes) -> bytes:
    return response[response.rfind(b"data: ") :]
