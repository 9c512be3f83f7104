"""Shared fixtures: async tests run on anyio's asyncio backend."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_backends` run on asyncio and on trio: stagefx is
    written against anyio, so its behaviour must not depend on the backend."""
    marked = metafunc.definition.get_closest_marker("both_backends") is not None
    if marked and "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many documentation snippets ran, so a rotting page shows."""
    from tests.library.test_docs import EXECUTED  # only once the docs tests ran

    if EXECUTED:
        pages = len({snippet.page for snippet in EXECUTED})
        terminalreporter.write_line(
            f"executed {len(EXECUTED)} documentation snippets from {pages} pages"
        )
