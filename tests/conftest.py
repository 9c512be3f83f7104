"""Shared fixtures: async tests run on anyio's asyncio backend."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many documentation snippets ran, so a rotting page shows."""
    from tests.test_docs import EXECUTED  # only once the docs tests ran

    if EXECUTED:
        pages = len({snippet.page for snippet in EXECUTED})
        terminalreporter.write_line(
            f"executed {len(EXECUTED)} documentation snippets from {pages} pages"
        )
