"""Durable runs on DBOS, for real: processes that die and resume, on SQLite and PostgreSQL.

Every run happens in a process of its own (`tests/providers/dbos/pipeline.py`); a
throwaway PostgreSQL 15 is started on a free port under /tmp and stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytest.importorskip("dbos", reason='DBOS is not installed (pip install "stagefx[dbos]")')

SCRIPTS = "tests.providers.dbos"
"""The package of the modules each run's process runs (`python -m SCRIPTS.pipeline ...`)."""
PG_BIN = Path("/usr/lib/postgresql/15/bin")
Run = Callable[..., "subprocess.CompletedProcess[str]"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL 15 of our own on 127.0.0.1; its base URL (no database)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed at {PG_BIN}")
    # Not under pytest's basetemp: a pytest starting elsewhere resets its root to 0700,
    # which the postgres user then cannot cross.
    base = Path(tempfile.mkdtemp(prefix="stagefx-pg-"))
    try:
        yield from _postgres(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _postgres(base: Path) -> Iterator[str]:
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        base.chmod(0o755)
    port = _free_port()
    init = subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        pytest.skip(f"PostgreSQL cannot be initialised here: {init.stderr.strip()[-300:]}")
    options = f"-k {sockets} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log")]
    start = subprocess.run(
        _as_postgres([*pg_ctl, "-w", "start"]),
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL cannot start here: {start.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh DBOS system database URL on each backend."""
    if request.param == "sqlite":
        if sys.version_info >= (3, 12) and sqlite3.sqlite_version_info < (3, 42):
            pytest.skip(
                f"DBOS on SQLite needs SQLite >= 3.42 on Python 3.12+ "
                f"(this one has {sqlite3.sqlite_version}): tested on PostgreSQL"
            )
        return f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    base: str = request.getfixturevalue("postgres")
    return f"{base}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def run(database: str, tmp_path: Path) -> Run:
    """Run tests/providers/dbos/pipeline.py in a new process against `database`."""

    def go(
        workflow_id: str,
        workdir: Path,
        *,
        executor: str = "worker-1",
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        workdir.mkdir(exist_ok=True)
        out = workdir / "out.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", f"{SCRIPTS}.pipeline", database, executor, workflow_id]
        return subprocess.run(
            [*command, str(workdir), str(out)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return go


def _out(workdir: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((workdir / "out.json").read_text())
    return loaded


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_crashed_run_resumes_without_repeating_a_completed_call(run: Run, tmp_path: Path) -> None:
    crashed, whole = tmp_path / "crashed", tmp_path / "whole"
    first = run("ticket-42", crashed, env={"STAGEFX_CRASH_AT": "3"})
    assert first.returncode == 17, first.stderr  # died as the third model call started
    assert len(_lines(crashed / "calls")) == 2
    assert _lines(crashed / "effects") == ["printer on fire"]  # the tool ran, after call 2

    second = run("ticket-42", crashed)  # the same executor id: DBOS recovers the run
    assert second.returncode == 0, second.stderr
    calls = [json.loads(line) for line in _lines(crashed / "calls")]
    assert [call["n"] for call in calls] == [1, 2, 3, 4, 5]  # each call once, none repeated
    assert _lines(crashed / "effects") == ["printer on fire"]  # the side effect happened once

    uninterrupted = run("ticket-43", whole)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert _out(crashed) == _out(whole)  # the same final state, usage included
    usage = _out(crashed)["usage"]
    assert usage == [{"model": "counting", "input_tokens": 60, "output_tokens": 25}]


def test_a_finished_workflow_id_returns_its_recorded_state_without_any_call(
    run: Run, tmp_path: Path
) -> None:
    workdir = tmp_path / "run"
    assert run("ticket-7", workdir).returncode == 0
    recorded = _out(workdir)
    again = run("ticket-7", workdir, env={"STAGEFX_CRASH_AT": "1"})  # any model call dies
    assert again.returncode == 0, again.stderr
    assert _out(workdir) == recorded
    assert len(_lines(workdir / "calls")) == 5
    assert len(_lines(workdir / "effects")) == 1


def test_a_pipeline_that_changed_shape_is_not_resumed(run: Run, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    assert run("ticket-9", workdir, env={"STAGEFX_CRASH_AT": "2"}).returncode == 17
    resumed = run("ticket-9", workdir, env={"STAGEFX_SHAPE": "alt"})
    assert resumed.returncode == 0, resumed.stderr
    failure = _out(workdir)
    assert failure["failure"] == "PipelineShapeError"
    assert "changed shape" in str(failure["message"])
    assert len(_lines(workdir / "calls")) == 1  # nothing replayed or called after the change


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # read back through sqlite3
def test_steps_are_stored_as_codec_json(database: str, run: Run, tmp_path: Path) -> None:
    assert run("ticket-11", tmp_path / "run").returncode == 0
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        rows = connection.execute(
            "select function_name, serialization, output from operation_outputs "
            "order by function_id"
        ).fetchall()
    names = [name for name, _, _ in rows]
    assert (
        names
        == ["stagefx.shape", *["stagefx.model"] * 2, "stagefx.tool:file_ticket"]
        + ["stagefx.model"] * 3
    )
    for _, serialization, output in rows:
        assert serialization == "portable_json"
        assert json.loads(output)["codec"] == 1


def test_without_dbos_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['dbos'] = None\n"
        "try:\n    import stagefx.dbos\n"
        "except ImportError as error:\n    print(error)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert 'pip install "stagefx[dbos]"' in shown.stdout, shown.stderr


def _queue_worker(
    role: str, url: str, executor: str, workdir: Path, *args: str, **env: str
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", f"{SCRIPTS}.queue_worker", role, url, executor, str(workdir)]
    return subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _in_flight(events: list[tuple[float, int]]) -> int:
    """The most intervals open at once; at equal times an end comes before a start."""
    most = now = 0
    for _, step in sorted(events):
        now += step
        most = max(most, now)
    return most


def test_three_workers_share_a_queue_while_one_is_killed(postgres: str, tmp_path: Path) -> None:
    from tests.providers.dbos.queue_worker import GLOBAL_CONCURRENCY, WORKER_CONCURRENCY

    runs = 300
    url = f"{postgres}/q_{uuid.uuid4().hex[:12]}"
    producer = _queue_worker("produce", url, "producer", tmp_path, str(runs))
    workers: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("enqueued")):  # the database and the queue exist
            assert producer.poll() is None, producer.communicate()[1]
            assert time.monotonic() < deadline, "the producer did not enqueue in time"
            time.sleep(0.05)
        # The doomed worker consumes first, so the others cannot leave it nothing to do;
        # it dies at its 30th call once both others have started calls of their own.
        doomed = _queue_worker(
            "work",
            url,
            "worker-a",
            tmp_path,
            STAGEFX_CRASH_AT="30",
            STAGEFX_CRASH_AFTER="worker-b,worker-c",
        )
        workers.append(doomed)
        while not list(tmp_path.glob("calls-worker-a-*")):
            assert doomed.poll() is None, doomed.communicate()[1]
            assert time.monotonic() < deadline + 60, "the first worker took no run in time"
            time.sleep(0.05)
        workers += [_queue_worker("work", url, f"worker-{n}", tmp_path) for n in "bc"]
        assert doomed.wait(timeout=120) == 17, doomed.communicate()[1]  # killed while sharing
        # A process launched with the dead worker's executor id recovers its runs.
        workers.append(_queue_worker("work", url, "worker-a", tmp_path))
        assert producer.wait(timeout=90) == 0, producer.communicate()[1]
    finally:
        for process in [producer, *workers]:
            if process.poll() is None:
                process.kill()
            process.communicate()

    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results) == sorted(f"run-{n}" for n in range(runs))
    for n in range(runs):
        assert f"done: item {n}" in json.dumps(results[f"run-{n}"])

    ended: dict[str, int] = {}
    ended_in: dict[str, str] = {}
    events: list[tuple[float, int]] = []
    per_process: list[int] = []
    interrupted: list[tuple[str, str]] = []
    for log in tmp_path.glob("calls-*"):
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        open_calls: dict[str, float] = {}
        mine: list[tuple[float, int]] = []
        for line in lines:
            if line["event"] == "start":
                open_calls[line["input"]] = line["t"]
                mine.append((line["t"], 1))
            elif line["event"] == "end":
                del open_calls[line["input"]]
                ended[line["input"]] = ended.get(line["input"], 0) + 1
                ended_in[line["input"]] = log.name
                mine.append((line["t"], -1))
            else:  # killed: every call still open dies with the process
                for said in open_calls:
                    interrupted.append((said, log.name))
                    mine.append((line["t"], -1))
                open_calls.clear()
        assert not open_calls, f"{log.name}: calls neither ended nor killed"
        per_process.append(_in_flight(mine))
        events += mine

    assert sorted(ended) == sorted(f"item {n}" for n in range(runs))
    assert set(ended.values()) == {1}, "a completed call was made again"
    assert interrupted  # the killed worker died with a run in flight: another process ran it
    assert all(ended_in[said] != dead for said, dead in interrupted)
    assert max(per_process) <= WORKER_CONCURRENCY
    assert _in_flight(events) <= GLOBAL_CONCURRENCY
    assert _in_flight(events) > WORKER_CONCURRENCY  # the limit was reached, across workers


def test_a_durable_run_streams_its_live_steps_and_a_finished_one_only_finishes(
    database: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    secret = "live-" + uuid.uuid4().hex  # not key-shaped: found as the env var's value
    done = subprocess.run(
        [sys.executable, "-m", f"{SCRIPTS}.streaming", database, "streamed-1", str(out)],
        cwd=ROOT,
        env={**os.environ, "STAGEFX_TEST_API_KEY": secret},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(out.read_text())
    first, again = shown["first"], shown["again"]
    assert first["deltas"][:4] == [
        ["a fi", ["one"]],
        ["rst ", ["one"]],
        ["answ", ["one"]],
        ["er", ["one"]],
    ]
    assert "".join(text for text, path in first["deltas"] if path == ["two"]) == "scaled"
    assert again["deltas"] == []  # finished: its recorded state, no call
    assert first["state"] == again["state"] == shown["live"]  # NaN, -inf, 10**4000: one outcome
    context = first["state"]["context"]
    errors = context[4]["input"]["tool_responses"]
    assert len(errors) == 3
    for error in errors:
        assert error["error"] is True
        assert "not JSON" in error["content"][0]
    refused = context[-2]["input"]["tool_responses"][0]
    assert refused["content"] == ["sign_in failed: PermissionError: refused credential ***"]
    assert secret not in out.read_text()
    if database.startswith("sqlite"):  # the rows a team shares hold no credential either
        with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
            rows = connection.execute("select output from operation_outputs").fetchall()
        assert len(rows) == 10  # the shape, five model calls, four tool calls
        assert not any(secret in str(row) for row in rows)


def test_a_typed_artifact_comes_back_typed_and_a_broken_env_fails_alike_every_time(
    database: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", f"{SCRIPTS}.promises", database, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(out.read_text())
    assert seen["typed first"] == seen["typed again"] == {"name": "Ada", "age": 36}
    assert seen["broken first"] == seen["broken again"]
    kind, cause, message = seen["broken first"]
    assert (kind, cause) == ("DurableRunError", "ConnectionError")
    assert "the vault is down" in message
    assert seen["cancelled"] == ["DurableRunError", "WorkflowCancelled"]
