"""Throughput of the OpenAI-compatible backend against a local server with a fixed 200 ms latency.

For concurrency 1, 8 and 32 it routes enough conversations to keep the endpoint busy for a few seconds and
reports throughput as a fraction of the ideal (concurrency / latency). It also runs the same calls through the
whole scoring path (scorer, evaluator, store writes) at concurrency 32 and reports the engine's overhead: the
share of wall time the scoring path adds to the bare calls (and, for reference, the share beyond the ideal,
which also counts the HTTP client's own time). The server runs in its own process so its work is not counted as ours.
Target: efficiency at 32 of at least 0.9, engine overhead under 5 %. The last line is one JSON object.

    python benchmarks/api_concurrency.py [--latency-ms 200] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from promptopt.case import Case, ToolCall  # noqa: E402
from promptopt.evaluators.tool_call import ToolCallEvaluator  # noqa: E402
from promptopt.models.openai_compat import Endpoint, OpenAICompatibleModel  # noqa: E402
from promptopt.optimizer.budget import Budget  # noqa: E402
from promptopt.optimizer.scorer import Scorer  # noqa: E402
from promptopt.runs.store import Store  # noqa: E402
from promptopt.tasks import bundled_task  # noqa: E402
from promptopt.tasks.tool_routing import ToolRoutingTask  # noqa: E402


class FixedAnswer:
    """Always calls the first tool; all the time goes to the server's fixed latency."""

    model_name = "fixed"

    def respond(self, request):
        name = request["tools"][0]["function"]["name"] if request.get("tools") else None
        if name is None:
            return {"role": "assistant", "content": "ok"}, 10, 1
        call = {"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, 50, 5


def serve(latency_s: float, port_queue) -> None:
    from promptopt.server import ChatServer

    server = ChatServer(FixedAnswer(), latency_s=latency_s)
    port_queue.put(server.base_url)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="Ideal busy time per measurement.")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    queue: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(latency, queue), daemon=True)
    process.start()
    base_url = queue.get(timeout=30)
    tools = bundled_task("tool-routing").tools
    figures: dict[str, float] = {}
    try:
        for concurrency in (1, 8, 32):
            model = OpenAICompatibleModel(Endpoint("fixed", base_url), concurrency=concurrency)
            model.route("warm up", tools, [[{"role": "user", "content": "hi"}]] * concurrency)
            count = max(concurrency, int(round(args.seconds * concurrency / latency)))
            conversations = [[{"role": "user", "content": f"question {i}"}] for i in range(count)]
            started = time.perf_counter()
            routed = model.route("You route requests.", tools, conversations)
            wall = time.perf_counter() - started
            assert not any(r.error for r in routed), [r.error for r in routed if r.error][:3]
            efficiency = (count / wall) / (concurrency / latency)
            figures[f"efficiency_c{concurrency}"] = round(efficiency, 4)
            print(f"concurrency {concurrency:2}: {count} calls in {wall:.2f}s = {count / wall:.1f}/s, "
                  f"{efficiency:.1%} of the ideal {concurrency / latency:.0f}/s")
            if concurrency == 32:
                figures.update(scorer_path(model, tools, count, latency, concurrency, wall))
            model.close()
    finally:
        process.terminate()
    print(json.dumps(figures))


def scorer_path(model: OpenAICompatibleModel, tools: list, count: int, latency: float, concurrency: int,
                calls_wall: float) -> dict:
    """The same number of calls through the scorer (evaluate, store every evaluation and call): the engine's
    overhead is the wall time it adds to the bare calls; against the ideal, the HTTP client's share shows too."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/bench.db")
        cases = [Case(query=f"request {i}", expected=ToolCall(tools[0]["function"]["name"]), label="bad")
                 for i in range(count)]
        ids = store.import_cases(cases).case_ids
        stored = store.cases(ids)
        run_id = store.create_run("tool-routing", "benchmark", {}, tools, {i: "train" for i in ids})
        candidate = store.add_candidate(run_id, 0, "You route requests.", "seed")
        scorer = Scorer(ToolRoutingTask(tools=tools), model, ToolCallEvaluator(), store, run_id, Budget())
        started = time.perf_counter()
        results = scorer.score(candidate, "You route requests.", stored, "benchmark")
        wall = time.perf_counter() - started
    ideal = count * latency / concurrency
    overhead = max(0.0, (wall - calls_wall) / wall)
    print(f"scorer path, concurrency {concurrency}: {len(results)} cases in {wall:.2f}s (bare calls "
          f"{calls_wall:.2f}s, ideal {ideal:.2f}s): engine overhead {overhead:.1%} of wall time, "
          f"{max(0.0, wall - ideal) / wall:.1%} beyond the ideal")
    return {"scorer_efficiency_c32": round(ideal / wall, 4), "engine_overhead_c32": round(overhead, 4),
            "overhead_vs_ideal_c32": round(max(0.0, wall - ideal) / wall, 4)}


if __name__ == "__main__":
    main()
