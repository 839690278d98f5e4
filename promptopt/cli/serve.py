"""`promptopt serve`: the embedded model behind the OpenAI chat-completions API."""
from __future__ import annotations

import ipaddress
import socket

import click

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` answers only this machine (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; the default answers only this machine.")
@click.option("--port", type=click.IntRange(0, 65535), default=8400, show_default=True, help="Port (0: any free).")
@click.option("--api-key", envvar="PROMPTOPT_SERVE_API_KEY", default=None,
              help="Require this bearer token on every request (or set $PROMPTOPT_SERVE_API_KEY); strongly advised "
                   "with a --host other than this machine's.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Requests answered at once (the embedded model answers one at a time on a CPU).")
@click.option("--queue", type=click.IntRange(0), default=16, show_default=True,
              help="Requests that may wait for a worker; more get 503 with Retry-After.")
@click.option("--queue-timeout", type=click.FloatRange(0, min_open=True), default=60, show_default=True,
              help="Seconds a request may wait for a worker; longer gets 503 with Retry-After. A request whose "
                   "client left while waiting is dropped at once.")
@click.option("--idle-timeout", type=click.FloatRange(0, min_open=True), default=30, show_default=True,
              help="Seconds a connection may send nothing before it is closed (its thread ends).")
@click.option("--max-tokens-cap", type=click.IntRange(1), default=4096, show_default=True,
              help="Largest max_tokens / max_completion_tokens; a larger one gets OpenAI's 400.")
@click.option("--max-body-kb", type=click.IntRange(1), default=1024, show_default=True,
              help="Largest request body; a larger one gets 413 without being read.")
@click.option("--arguments/--no-arguments", default=True, show_default=True,
              help="Fill tool-call arguments by generation (slow on CPU); without, tool calls carry {}.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0, show_default=True,
              help="For testing clients: add this delay to every answer.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0, show_default=True,
              help="For testing clients: share of requests answered with an injected fault (429 with Retry-After, "
                   "500, a stall, a malformed body).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
def serve(host, port, api_key, workers, queue, queue_timeout, idle_timeout, max_tokens_cap, max_body_kb, arguments,
          latency_ms, fault_rate, seed) -> None:
    """Serve the embedded model over the OpenAI chat-completions API.

    \b
    Any OpenAI client can then use the local model as `embedded`:
      promptopt serve --port 8400 &
      curl http://127.0.0.1:8400/v1/chat/completions -d '{"model": "embedded",
           "messages": [{"role": "user", "content": "hi"}]}'
      promptopt run --model embedded --base-url http://127.0.0.1:8400/v1

    Requests with `tools` are routed (a tool call, or plain content when no tool fits); others are generated.
    Malformed requests get 400 (also a token limit over --max-tokens-cap), an unknown model 404, a body over
    --max-body-kb 413, a full queue or a wait over --queue-timeout 503. A reply cut at its token limit says
    finish_reason "length".
    """
    from promptopt.server import ChatServer, EmbeddedResponder, FaultPlan

    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines"
                   + ("" if api_key else " with no --api-key: anyone who can reach it can use the model"), err=True)
    responder = EmbeddedResponder(check_arguments=arguments)
    server = ChatServer(responder, host, port, latency_s=latency_ms / 1000, faults=FaultPlan(rate=fault_rate, seed=seed),
                        log=lambda line: click.echo(line, err=True), workers=workers, queue=queue, api_key=api_key,
                        max_body=max_body_kb * 1024, queue_timeout_s=queue_timeout, idle_timeout_s=idle_timeout,
                        max_tokens_cap=max_tokens_cap)
    click.echo(f"serving model 'embedded' at {server.base_url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
