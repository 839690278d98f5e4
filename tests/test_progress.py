"""What the commands print while they work, through `promptopt check` against a scripted endpoint: plain lines
when stderr is not a terminal, a bar with counts when it is, nothing with --quiet, the debug log with --verbose;
and the Python API's plain callable still gets its messages."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from click.testing import CliRunner

from promptopt.cli import main
from promptopt.progress import LineProgress, counter
from promptopt.server import ChatServer
from tests.fakes import ExamplesRouter
from tests.scripted_runs import scripted_task
from tests.support import ROOT

LINE = re.compile(r"^\[\s*\d+\.\ds\] \S")


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """`promptopt check` arguments (minus verbosity) on a few bundled cases, with the scripted endpoint running."""
    folder = tmp_path_factory.mktemp("progress")
    case_file, expected = scripted_task(folder, every=12)
    prompt = folder / "prompt.md"
    prompt.write_text("Route the request to a tool.\n", encoding="utf-8")
    with ChatServer(ExamplesRouter(expected)) as server:
        yield {"cases": sum(1 for _ in case_file.open(encoding="utf-8")), "folder": folder,
               "args": ["check", str(prompt), "--cases", str(case_file), "--model", "scripted", "--base-url",
                        server.base_url, "--api-key", "sk-test", "--db", f"sqlite:///{folder / 'store.db'}"]}


def check(gate, *flags):
    return CliRunner().invoke(main, [*gate["args"], *flags])


def test_without_a_terminal_progress_is_plain_timed_lines(gate):
    result = check(gate)
    assert result.exit_code in (0, 1), result.output
    lines = result.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines)
    assert f"check {gate['cases']}/{gate['cases']} cases" in result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr


def test_quiet_prints_the_result_and_no_progress(gate):
    result = check(gate, "--quiet")
    assert result.stderr == ""
    assert re.search(r"^(PASS|FAIL): ", result.stdout, re.M)


def test_verbose_adds_the_per_batch_debug_log(gate):
    normal, verbose = check(gate), check(gate, "--verbose")
    assert normal.stdout.splitlines()[-1] == verbose.stdout.splitlines()[-1]
    assert len(verbose.stderr.splitlines()) > len(normal.stderr.splitlines())
    assert re.search(r"DEBUG promptopt\.optimizer\.scorer: check: batch 1 of 1: \d+ cases, \d+ passed, \d+ model "
                     r"calls", verbose.stderr)
    assert "DEBUG" not in normal.stderr


def test_on_a_terminal_scoring_shows_a_bar_with_counts(gate):
    main_fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 30 rows, 100 columns
    env = {**os.environ, "PROMPTOPT_CACHE_DIR": str(gate["folder"] / "tty-cache")}
    process = subprocess.Popen([sys.executable, "-m", "promptopt.cli", *gate["args"]], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the terminal closes when the command exits
            break
        if not chunk:
            break
        shown += chunk
    stdout = process.communicate(timeout=120)[0]
    os.close(main_fd)
    text = shown.decode("utf-8", "replace")
    assert re.search(rf"check: +\d+%\|.*\| *\d+/{gate['cases']} ", text), text
    assert "\r" in text
    assert b"PASS" in stdout or b"FAIL" in stdout


def test_a_plain_callable_still_gets_counting_messages():
    messages: list[str] = []
    with counter(messages.append, "seed train", 4) as count:
        count.advance(2)
        count.advance(2)
    assert re.fullmatch(r"seed train 2/4 cases, about \d+\.\ds left", messages[0])
    assert messages[1] == "seed train 4/4 cases"
    with counter(messages.append, "search", 3, "steps", say_counts=False) as steps:
        steps.advance()
    assert len(messages) == 2


def test_a_phase_counted_unit_by_unit_says_at_most_about_ten_lines():
    messages: list[str] = []
    with counter(messages.append, "converting weights", 270, "tensors") as count:
        for _ in range(270):
            count.advance()
    assert 9 <= len(messages) <= 11 and messages[-1] == "converting weights 270/270 tensors"


def test_line_progress_counts_through_its_own_counter(capsys):
    shown = LineProgress()
    with counter(shown, "search", 2, "steps") as steps:
        steps.advance()
    assert re.fullmatch(r"\[\s*\d+\.\ds\] search 1/2 steps, about \d+\.\ds left\n", capsys.readouterr().err)


def test_cases_import_says_what_it_read_only_when_verbose(tmp_path):
    case_file, _ = scripted_task(tmp_path, every=40)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    template = tmp_path / "labels.csv"
    normal = CliRunner().invoke(main, ["cases", "import", str(case_file), "--db", db])
    verbose = CliRunner().invoke(main, ["cases", "import", str(case_file), "--db", db, "-v"])
    quiet = CliRunner().invoke(main, ["cases", "import", str(case_file), "--db", db, "-q", "--write-labels",
                                      str(template)])
    assert normal.stderr == "" and re.match(r"\d+ cases in 1 file\(s\): \d+ new, 0 already stored$", normal.stdout)
    assert re.search(rf"DEBUG promptopt\.cli\.cases: read {re.escape(str(case_file))}: \d+ cases, 0 unlabelled "
                     "turns", verbose.stderr)
    assert verbose.stdout == quiet.stdout and "already stored" in quiet.stdout
    assert quiet.stderr == "" and template.exists()
