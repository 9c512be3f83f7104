"""How the test suite's DBOS processes launch: one config for all of them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer


@contextmanager
def launched(name: str, url: str, executor: str) -> Iterator[None]:
    """DBOS launched on the system database `url` for the block, destroyed after.
    Register workflows (call `durable(...)`) before entering it."""
    config: DBOSConfig = {
        "name": name,
        "system_database_url": url,
        "executor_id": executor,
        "serializer": DBOSPortableJSONSerializer(),
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.05,
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()
