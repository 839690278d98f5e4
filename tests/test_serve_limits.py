"""`promptopt serve`'s limits, seen over real HTTP with scripted responders: a client that left while queued
frees its place at once (its work is never done), a request waits in the queue only so long, an idle connection
is closed, `max_tokens` is capped with OpenAI's 400, and a reply cut at its token limit says `length`."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import openai
import pytest

from promptopt.server import ChatServer
from tests.fakes import Echo

GOOD = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}


class Wordy:
    """Writes as many tokens as the request allows (or 5 when it names no limit)."""

    model_name = "scripted"

    def respond(self, request):
        tokens = request.get("max_completion_tokens") or request.get("max_tokens") or 5
        return {"role": "assistant", "content": "word " * tokens}, 3, tokens


def post(server: ChatServer, body: dict, timeout: float = 10) -> tuple[int, dict, dict]:
    """Status, JSON body and headers of one POST to the chat endpoint."""
    host, port = server._httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    finally:
        connection.close()


def in_background(server: ChatServer, results: list) -> threading.Thread:
    """POST `GOOD` on a thread, its status appended to `results`."""
    thread = threading.Thread(target=lambda: results.append(post(server, GOOD)[0]))
    thread.start()
    return thread


def client(server: ChatServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=10)


def test_a_client_gone_while_queued_frees_its_place_at_once():
    responder = Echo(seconds=1.5)
    with ChatServer(responder, workers=1, queue=1) as server:
        statuses: list[int] = []
        first = in_background(server, statuses)
        time.sleep(0.2)
        with pytest.raises(TimeoutError):  # queued behind the first, then gives up
            post(server, GOOD, timeout=0.3)
        time.sleep(0.3)
        status, _, _ = post(server, GOOD)  # its place is free again: queued, not turned away
        first.join()
    assert status == 200 and statuses == [200]
    assert responder.calls == 2  # the first and the last; the abandoned one never ran


def test_a_request_waits_in_the_queue_only_so_long():
    with ChatServer(Echo(seconds=1.5), workers=1, queue=1, queue_timeout_s=0.3) as server:
        statuses: list[int] = []
        first = in_background(server, statuses)
        time.sleep(0.2)
        started = time.perf_counter()
        status, body, headers = post(server, GOOD)
        waited = time.perf_counter() - started
        first.join()
    assert status == 503 and "Retry-After" in headers and body["error"]["type"] == "server_busy"
    assert 0.25 < waited < 1.0 and statuses == [200]


@pytest.mark.parametrize("exchange_first", [False, True], ids=["silent", "after-an-answer"])
def test_an_idle_connection_is_closed_after_the_idle_timeout(exchange_first):
    with ChatServer(Echo(), idle_timeout_s=0.5) as server:
        threads = threading.active_count()
        with socket.create_connection(server._httpd.server_address[:2], timeout=5) as sock:
            if exchange_first:
                body = json.dumps(GOOD)
                sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                             f"Content-Type: application/json\r\n\r\n{body}".encode())
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.perf_counter()
            assert sock.recv(1) == b""  # closed by the server, not by this client's 5 s timeout
            assert 0.4 < time.perf_counter() - started < 2.0
        time.sleep(0.2)
        assert threading.active_count() < threads + 1  # the connection's thread has ended


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_a_token_limit_over_the_cap_gets_openais_400(name):
    with ChatServer(Wordy(), max_tokens_cap=100) as server:
        with pytest.raises(openai.BadRequestError) as refused:
            client(server).chat.completions.create(**GOOD, **{name: 101})
        assert refused.value.status_code == 400 and refused.value.body["param"] == name
        assert "at most 100" in refused.value.body["message"]
        reply = client(server).chat.completions.create(**GOOD, **{name: 100})
        assert reply.usage.completion_tokens == 100


def test_max_tokens_and_max_completion_tokens_together_are_refused_as_openai_does():
    with ChatServer(Wordy()) as server:
        with pytest.raises(openai.BadRequestError) as refused:
            client(server).chat.completions.create(**GOOD, max_tokens=5, max_completion_tokens=5)
        assert refused.value.body["param"] == "max_tokens"
        assert refused.value.body["code"] == "invalid_parameter_combination"


@pytest.mark.parametrize("limit", [{"max_tokens": 7}, {"max_completion_tokens": 7}])
def test_a_reply_cut_at_its_token_limit_says_length(limit):
    with ChatServer(Wordy()) as server:
        cut = client(server).chat.completions.create(**GOOD, **limit, n=2)
        whole = client(server).chat.completions.create(**GOOD)
    assert [c.finish_reason for c in cut.choices] == ["length", "length"]
    assert whole.choices[0].finish_reason == "stop"


def test_a_client_gone_while_its_choices_are_written_gets_no_more_of_them():
    responder = Echo(seconds=0.6)
    with ChatServer(responder) as server:
        with pytest.raises(TimeoutError):
            post(server, {**GOOD, "n": 4}, timeout=0.3)
        time.sleep(1.5)
    assert responder.calls == 1


def test_a_reply_with_no_limit_named_stays_within_a_cap_below_the_default():
    with ChatServer(Wordy(), max_tokens_cap=3) as server:
        reply = client(server).chat.completions.create(**GOOD)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"


def test_serve_passes_its_limits_to_the_server(monkeypatch):
    from click.testing import CliRunner

    from promptopt import server as module
    from promptopt.cli import main

    seen: dict[str, object] = {}

    class Probed(module.ChatServer):
        def serve_forever(self) -> None:
            self.start()
            seen["cap"] = post(self, {**GOOD, "max_tokens": 6})[1]["error"]["param"]
            with socket.create_connection(self._httpd.server_address[:2], timeout=5) as sock:
                started = time.perf_counter()
                seen["closed"] = sock.recv(1) == b"" and time.perf_counter() - started < 2.0
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "EmbeddedResponder", lambda **kwargs: Wordy())
    monkeypatch.setattr(module, "ChatServer", Probed)
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--max-tokens-cap", "5", "--idle-timeout", "0.5",
                                       "--queue-timeout", "2"])
    assert result.exit_code == 0, result.output
    assert seen == {"cap": "max_tokens", "closed": True}
