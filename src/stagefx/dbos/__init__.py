"""Durable runs on DBOS (install the `dbos` extra): a crash never repeats a paid call.

```python
workflow = durable(pipeline, name="triage", env=lambda: ctx.scope("triage", ...))
state = await workflow.execute(StageState(result=ticket), workflow_id="ticket-42")
```
A durable run is a DBOS workflow; every model call and every tool call in it
is a DBOS step whose output is stagefx's JSON codec (see `docs/durable.md`).
The user configures and launches DBOS; call `durable(...)` before `DBOS.launch()`.
"""

from __future__ import annotations

try:
    import dbos as _dbos  # noqa: F401  # pyright: ignore[reportUnusedImport]  # only to fail early, naming the extra
except ImportError as _import_error:
    raise ImportError(
        'stagefx.dbos needs DBOS: install the `dbos` extra with pip install "stagefx[dbos]"'
    ) from _import_error

from stagefx._public import publish
from stagefx.dbos._durable import (
    DurablePipeline,
    DurableRunError,
    EnvFactory,
    PipelineShapeError,
    ReplayedError,
    StepMismatchError,
    durable,
)

__all__ = [
    "DurablePipeline",
    "DurableRunError",
    "EnvFactory",
    "PipelineShapeError",
    "ReplayedError",
    "StepMismatchError",
    "durable",
]

publish(__name__, globals(), __all__)
