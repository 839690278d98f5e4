"""`promptopt serve`: the embedded model behind the OpenAI chat-completions API."""
from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; the default answers only this machine.")
@click.option("--port", type=click.IntRange(0, 65535), default=8400, show_default=True, help="Port (0: any free).")
@click.option("--arguments/--no-arguments", default=True, show_default=True,
              help="Fill tool-call arguments by generation (slow on CPU); without, tool calls carry {}.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0, show_default=True,
              help="For testing clients: add this delay to every answer.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0, show_default=True,
              help="For testing clients: share of requests answered with an injected fault (429 with Retry-After, "
                   "500, a stall, a malformed body).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
def serve(host, port, arguments, latency_ms, fault_rate, seed) -> None:
    """Serve the embedded model over the OpenAI chat-completions API.

    \b
    Any OpenAI client can then use the local model as `embedded`:
      promptopt serve --port 8400 &
      curl http://127.0.0.1:8400/v1/chat/completions -d '{"model": "embedded",
           "messages": [{"role": "user", "content": "hi"}]}'
      promptopt run --model embedded --base-url http://127.0.0.1:8400/v1

    Requests with `tools` are routed (a tool call, or plain content when no tool fits); others are generated.
    """
    from promptopt.server import ChatServer, EmbeddedResponder, FaultPlan

    responder = EmbeddedResponder(check_arguments=arguments)
    server = ChatServer(responder, host, port, latency_s=latency_ms / 1000, faults=FaultPlan(rate=fault_rate, seed=seed),
                        log=lambda line: click.echo(line, err=True))
    click.echo(f"serving model 'embedded' at {server.base_url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
