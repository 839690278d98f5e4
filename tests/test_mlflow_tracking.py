"""MLflow tracking and the Prompt Registry against real MLflow stores the tests start themselves: a SQLite-backed
one per test, and one `mlflow server` subprocess on a loopback port for the module. A tracked run's parameters,
metrics per step and artifacts are read back with MLflow's own client; the registered prompt is `promptopt
export`'s text byte for byte and `check` scores it; a resumed run continues its MLflow run; a tracking server that
is killed mid-run, unreachable or missing its library costs one warning and never the run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# MLflow must not phone home from a test: no usage telemetry (set before it is imported); the server also loads
# LiteLLM's price list from its package, not the network, and starts no job runner
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
SERVER_ENV = {**NO_TELEMETRY, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
os.environ.update(NO_TELEMETRY)
mlflow = pytest.importorskip("mlflow")

from click.testing import CliRunner  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from promptopt.api import optimize, resume  # noqa: E402
from promptopt.cli import main  # noqa: E402
from promptopt.markup import protected_regions  # noqa: E402
from promptopt.runs.lifecycle import RunInterrupted  # noqa: E402
from promptopt.runs.store import Store  # noqa: E402
from promptopt.server import ChatServer  # noqa: E402
from tests.fakes import OPTIONS, RUNS, ExamplesRouter, Interrupting, ScriptedModel  # noqa: E402
from tests.scripted_runs import run_command, scripted_task  # noqa: E402

STEPS = 2
SERVER_START_S = 240
"""How long `mlflow server` may take to answer (its imports take most of a minute on a busy 2-core machine)."""


@pytest.fixture(autouse=True)
def mlflow_home(tmp_path, monkeypatch):
    """Each test in its own folder (a SQLite tracking store keeps artifacts under the working directory's
    ./mlruns), with no tracking URI or experiment from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def scripted(tmp_path):
    """A case file, the store's URL and a scripted endpoint answering its cases: what a `promptopt run` needs."""
    case_file, expected = scripted_task(tmp_path, every=6)
    with ChatServer(ExamplesRouter(expected)) as server:
        yield case_file, f"sqlite:///{tmp_path / 'store.db'}", server


def run_args(scripted, *extra: str) -> list[str]:
    """`promptopt run` on the scripted cases and endpoint, for `CliRunner`."""
    case_file, db, server = scripted
    return run_command(db, case_file, server.base_url, "--steps", str(STEPS), "--json", *extra)[3:]


def tracked_run(client: MlflowClient, run_id: str):
    """The MLflow run promptopt's run `run_id` was logged as (the only one with its tag)."""
    experiment = client.get_experiment_by_name("promptopt")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`promptopt.run_id` = '{run_id}'")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tracking_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line.lower()]


def test_a_tracked_run_logs_parameters_metrics_by_step_and_artifacts(scripted):
    uri = "sqlite:///mlflow.db"
    result = CliRunner().invoke(main, run_args(scripted, "--track", uri, "-o", "n_demos=4"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
    store = Store(scripted[1])
    client = MlflowClient(uri)
    tracked = tracked_run(client, run_id)
    assert store.run(run_id).mlflow_run_id == tracked.info.run_id
    assert tracked.info.status == "FINISHED"
    params = tracked.data.params
    assert {key: params[key] for key in ("task", "strategy", "model", "seed", "steps", "option.n_demos")} == \
        {"task": "tool-routing", "strategy": "demos", "model": "scripted", "seed": "0", "steps": str(STEPS),
         "option.n_demos": "4"}
    assert "budget_calls" not in params  # no budget given: nothing logged for it

    steps = store.steps(run_id)
    history = {key: [(m.step, m.value) for m in client.get_metric_history(tracked.info.run_id, key)]
               for key in ("val_accuracy", "candidates_proposed", "candidates_valid", "candidates_accepted",
                           "model_calls", "tokens", "cost_usd")}
    assert history["val_accuracy"] == [(s.step, s.val_accuracy) for s in steps]
    assert [step for step, _ in history["candidates_proposed"]] == list(range(STEPS + 1))
    candidates = store.candidates(run_id)
    for step in range(1, STEPS + 1):
        made = [c for c in candidates if c.step == step]
        assert history["candidates_proposed"][step][1] == len(made) > 0
        assert history["candidates_valid"][step][1] == sum(c.status != "invalid" for c in made)
        assert history["candidates_accepted"][step][1] == sum(c.status == "accepted" for c in made)
    calls = [value for _, value in history["model_calls"]]
    assert calls == sorted(calls) and calls[0] > 0  # running totals

    report = store.run(run_id).summary
    metrics = tracked.data.metrics
    assert metrics["winner_test_accuracy"] == pytest.approx(report["winner"]["test_accuracy"])
    ci95 = [metrics["winner_test_ci95_low"], metrics["winner_test_ci95_high"]]
    assert ci95 == pytest.approx(report["winner"]["ci95"])
    assert metrics["seed_test_accuracy"] == pytest.approx(report["seed"]["test_accuracy"])
    assert metrics["p_value"] == pytest.approx(report["p_value"])

    assert sorted(a.path for a in client.list_artifacts(tracked.info.run_id)) == ["prompt.md", "report.html"]
    exported = CliRunner().invoke(main, ["export", run_id, "--db", scripted[1]]).stdout
    prompt = Path(client.download_artifacts(tracked.info.run_id, "prompt.md", ".")).read_text(encoding="utf-8")
    assert prompt == exported
    page = Path(client.download_artifacts(tracked.info.run_id, "report.html", ".")).read_text(encoding="utf-8")
    assert f"<h1>promptopt run {run_id}</h1>" in page


def test_the_registered_prompt_is_the_export_byte_for_byte_and_check_scores_it(scripted, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    case_file, db, server = scripted
    result = CliRunner().invoke(main, run_args(scripted))
    run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
    exported = CliRunner().invoke(main, ["export", run_id, "--db", db]).stdout
    first = CliRunner().invoke(main, ["export", run_id, "--to", "mlflow:routing", "--track", uri, "--db", db])
    assert first.exit_code == 0, first.output
    assert first.stdout == f"registered mlflow:routing/1 from run {run_id}\n"
    again = CliRunner().invoke(main, ["export", run_id[:6], "--to", "mlflow:routing", "--track", uri, "--db", db])
    assert again.stdout.startswith("registered mlflow:routing/2 ")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what the commands below read, without --track
    registered = mlflow.genai.load_prompt("prompts:/routing/1")
    assert registered.template == exported
    report = Store(db).run(run_id).summary
    tags = registered.tags
    assert tags["promptopt.run_id"] == run_id and tags["promptopt.model"] == "scripted"
    assert float(tags["promptopt.test_accuracy"]) == pytest.approx(report["winner"]["test_accuracy"], abs=1e-4)
    assert json.loads(tags["promptopt.test_ci95"]) == pytest.approx(report["winner"]["ci95"], abs=1e-4)
    assert float(tags["promptopt.p_value"]) == pytest.approx(report["p_value"], rel=1e-3)
    assert tags["promptopt.protected_regions"] == str(len(protected_regions(exported))) != "0"

    (tmp_path / "exported.md").write_text(exported, encoding="utf-8")
    mlflow.genai.set_prompt_alias("routing", "production", 1)
    checks = {}
    for prompt in ("exported.md", "mlflow:routing/1", "mlflow:routing@production"):
        checked = CliRunner().invoke(main, ["check", prompt, "--cases", str(case_file), "--model", "scripted",
                                            "--base-url", server.base_url, "--db", db, "--json", "-q"])
        assert checked.exit_code in (0, 1), checked.output
        checks[prompt] = json.loads(checked.stdout.splitlines()[-1])
    scores = {prompt: (found["accuracy"], found["broken_case_ids"]) for prompt, found in checks.items()}
    assert scores["mlflow:routing/1"] == scores["exported.md"] == scores["mlflow:routing@production"]
    assert checks["mlflow:routing/1"]["cases"] > 0

    missing = CliRunner().invoke(main, ["check", "mlflow:routing/9", "--db", db])
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("Error: MLflow's Prompt Registry at ") and "not found" in missing.stderr


def test_a_resumed_run_continues_its_mlflow_run_and_logs_each_step_once(tmp_path, task):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    db = f"sqlite:///{tmp_path / 'store.db'}"
    model = Interrupting(task, stop_at=500)  # in step 2: steps 0 and 1 are tracked
    with pytest.raises(RunInterrupted) as stopped:
        optimize(strategy="demos", model=model, optimizer_model=model, db=db, track=uri, **OPTIONS, **RUNS["demos"])
    run_id = stopped.value.run_id
    client = MlflowClient(uri)
    before = tracked_run(client, run_id)
    assert before.info.status == "KILLED"
    logged = [m.step for m in client.get_metric_history(before.info.run_id, "val_accuracy")]
    assert 0 < len(logged) < RUNS["demos"]["steps"] + 1  # interrupted after some steps were tracked, not all

    finished = ScriptedModel(task)
    resume(run_id, db, model=finished, optimizer_model=finished, track=uri)
    after = tracked_run(client, run_id)
    assert after.info.run_id == before.info.run_id == Store(db).run(run_id).mlflow_run_id
    assert after.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(after.info.run_id, "val_accuracy")] == \
        [s.step for s in Store(db).steps(run_id)]
    assert "winner_test_accuracy" in after.data.metrics


def test_an_unreachable_tracking_server_is_one_warning_and_the_run_goes_on(scripted):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = CliRunner().invoke(main, run_args(scripted, "--track", url))
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 60
    (warning,) = tracking_warnings(result.stderr)
    assert warning.startswith(f"warning: MLflow tracking at {url} stopped: ")
    run = Store(scripted[1]).run(json.loads(result.stdout.splitlines()[-1])["run_id"])
    assert run.status == "finished" and run.summary["winner"] and run.mlflow_run_id == ""


def test_without_mlflow_a_run_warns_once_and_export_says_how_to_install_it(scripted, monkeypatch):
    for name in ("mlflow", "mlflow.tracking", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, name, None)  # `import mlflow` fails as if it were not installed
    result = CliRunner().invoke(main, run_args(scripted, "--track", "sqlite:///mlflow.db"))
    assert result.exit_code == 0, result.output
    (warning,) = tracking_warnings(result.stderr)
    assert "mlflow is not installed: pip install 'promptopt[mlflow]'" in warning
    run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
    export = CliRunner().invoke(main, ["export", run_id, "--to", "mlflow:x", "--track", "sqlite:///mlflow.db",
                                       "--db", scripted[1]])
    assert export.exit_code == 1
    assert export.stderr == "Error: mlflow is not installed: pip install 'promptopt[mlflow]'\n"


def test_the_command_line_and_an_untracked_run_never_import_mlflow():
    code = ("import sys, promptopt.cli, promptopt.api, promptopt.runs.mlflow_tracking; "
            "print('mlflow' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"


# The `mlflow server` tests come last: the server starts once, in the background, while the tests above run.

@pytest.fixture(scope="module", autouse=True)
def mlflow_server_process(tmp_path_factory):
    """An `mlflow server` on a free loopback port with a SQLite backend, started when the module's first test
    runs; stopped (its whole process group) at the end."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
               f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **SERVER_ENV}, start_new_session=True)
    yield process, f"http://127.0.0.1:{port}", folder / "server.log"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@pytest.fixture
def mlflow_server(mlflow_server_process) -> tuple[subprocess.Popen, str]:
    """The module's `mlflow server`, once it answers: (its process, its URL)."""
    process, url, log = mlflow_server_process
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"mlflow server exited:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer in {SERVER_START_S} s:\n{log.read_text(errors='replace')[-3000:]}")


def test_a_run_tracked_on_an_mlflow_server_is_read_back_with_mlflows_client(scripted, mlflow_server):
    _, url = mlflow_server
    result = CliRunner().invoke(main, run_args(scripted, "--track", url))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
    client = MlflowClient(url)
    tracked = tracked_run(client, run_id)
    assert tracked.info.status == "FINISHED" and tracked.data.params["strategy"] == "demos"
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "val_accuracy")] == \
        [s.step for s in Store(scripted[1]).steps(run_id)]
    assert sorted(a.path for a in client.list_artifacts(tracked.info.run_id)) == ["prompt.md", "report.html"]


class KillingRouter(ExamplesRouter):
    """The scripted endpoint, which kills the tracking server when the first candidate is scored (the seed's
    step is tracked by then)."""

    def __init__(self, expected: dict[str, str], seed_prompt: str, server: subprocess.Popen) -> None:
        super().__init__(expected)
        self.seed_prompt, self.server = seed_prompt, server

    def respond(self, request):
        system = request["messages"][0]["content"]
        if system != self.seed_prompt and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(30)
        return super().respond(request)


def test_a_tracking_server_killed_mid_run_costs_one_warning_and_nothing_of_the_run(tmp_path, task, mlflow_server):
    process, url = mlflow_server
    case_file, expected = scripted_task(tmp_path, every=6)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(KillingRouter(expected, task.seed_prompt, process)) as server:
        result = CliRunner().invoke(main, run_command(db, case_file, server.base_url, "--steps", str(STEPS),
                                                      "--json", "--track", url)[3:])
    assert process.poll() is not None, "the server was never killed: no candidate was scored"
    assert result.exit_code == 0, result.output
    (warning,) = tracking_warnings(result.stderr)
    assert warning.startswith(f"warning: MLflow tracking at {url} stopped: ")
    run = Store(db).run(json.loads(result.stdout.splitlines()[-1])["run_id"])
    assert run.status == "finished" and run.summary["winner"]["test_accuracy"] is not None
    assert run.mlflow_run_id  # tracked until the server died
    assert [s.step for s in Store(db).steps(run.id)] == list(range(STEPS + 1))
