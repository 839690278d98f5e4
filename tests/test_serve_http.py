"""`promptopt serve`'s HTTP surface with a scripted responder and raw sockets: every malformed request is a 4xx
answer on a live connection, the body is bounded, the queue is bounded (503), an API key can be required, only
the served model answers, and a request whose client left while queued is not worked on."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.cli.serve import is_loopback
from promptopt.server import ChatServer
from tests.fakes import Echo

GOOD = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}


def post(server: ChatServer, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    host, port = server._httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    status, payload = response.status, json.loads(response.read() or b"{}")
    connection.close()
    return status, payload


def raw_exchange(server: ChatServer, head: str) -> str:
    """Send hand-written request bytes; return the status line (a dropped connection would raise)."""
    host, port = server._httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(head.encode())
        return sock.recv(4096).decode(errors="replace").splitlines()[0]


@pytest.mark.parametrize("body, status, words", [
    (b"[1, 2]", 400, "must be a JSON object"),
    (b"{not json", 400, "not JSON"),
    (json.dumps({**GOOD, "messages": "hi"}).encode(), 400, "messages: must be a non-empty list"),
    (json.dumps({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages[0]"),
    (json.dumps({**GOOD, "tools": [{"type": "function"}]}).encode(), 400, "tools[0]"),
    (json.dumps({**GOOD, "tools": "oops"}).encode(), 400, "tools: must be a list"),
    (json.dumps({**GOOD, "temperature": "hot"}).encode(), 400, "temperature: must be a number"),
    (json.dumps({**GOOD, "model": "gpt-4o"}).encode(), 404, "'gpt-4o' is not served here"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "model"}).encode(), 400, "model is required"),
])
def test_malformed_requests_get_a_4xx_with_a_reason(body, status, words):
    with ChatServer(Echo()) as server:
        got, payload = post(server, body)
        assert got == status and words in payload["error"]["message"]
        assert post(server, json.dumps(GOOD).encode())[0] == 200  # the server is still up


@pytest.mark.parametrize("length, status", [("abc", "400"), ("-1", "400"), ("99999999", "413")])
def test_bad_or_huge_content_length_is_answered_without_reading_or_hanging(length, status):
    with ChatServer(Echo(), max_body=1024) as server:
        line = raw_exchange(server, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                                    "Content-Type: application/json\r\n\r\n{}")
        assert line.split()[1] == status


def test_an_api_key_is_required_when_set():
    with ChatServer(Echo(), api_key="s3cret") as server:
        assert post(server, json.dumps(GOOD).encode())[0] == 401
        assert post(server, json.dumps(GOOD).encode(), {"Authorization": "Bearer wrong"})[0] == 401
        assert post(server, json.dumps(GOOD).encode(), {"Authorization": "Bearer s3cret"})[0] == 200


def test_a_full_queue_answers_503_at_once():
    with ChatServer(Echo(seconds=1.0), workers=1, queue=0) as server:
        first = threading.Thread(target=post, args=(server, json.dumps(GOOD).encode()))
        first.start()
        time.sleep(0.3)
        started = time.perf_counter()
        status, payload = post(server, json.dumps(GOOD).encode())
        assert status == 503 and time.perf_counter() - started < 0.5
        first.join()


def test_a_request_abandoned_while_queued_is_not_worked_on():
    responder = Echo(seconds=0.8)
    with ChatServer(responder, workers=1, queue=4) as server:
        first = threading.Thread(target=post, args=(server, json.dumps(GOOD).encode()))
        first.start()
        time.sleep(0.2)
        host, port = server._httpd.server_address[:2]
        body = json.dumps(GOOD)
        with socket.create_connection((host, port)) as sock:  # queued behind the first, then gone
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                         f"Content-Type: application/json\r\n\r\n{body}".encode())
            time.sleep(0.2)
        first.join()
        time.sleep(0.3)
    assert responder.calls == 1


def test_serve_warns_when_reachable_from_other_machines(monkeypatch):
    from promptopt import server as module

    class Stub(module.ChatServer):
        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def stop(self) -> None:
            self._httpd.server_close()

    monkeypatch.setattr(module, "EmbeddedResponder", lambda **kwargs: Echo())
    monkeypatch.setattr(module, "ChatServer", Stub)
    wide = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert wide.exit_code == 0 and "reachable from other machines with no --api-key" in wide.output
    local = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert local.exit_code == 0 and "warning" not in local.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
