"""The OpenAI provider (install the `openai` extra).

```python
async with ctx.scope("app", OpenAIResponsesConfig(model="gpt-4o"), disposables=(OpenAI(),)):
    ...
```
"""

try:  # the provider's SDK: fail here, saying what to install
    import httpx2
    import openai
except ImportError as _import_error:
    raise ImportError(
        "stagefx.openai needs the openai client: install the `openai` extra with "
        'pip install "stagefx[openai]"'
    ) from _import_error

from stagefx._public import publish as _publish
from stagefx.openai._config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._provider import OpenAI

del httpx2, openai  # imported above only to check they are installed

__all__ = ["OpenAI", "OpenAIChatConfig", "OpenAIResponsesConfig"]

_publish(__name__, globals(), __all__)
