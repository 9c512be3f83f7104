"""The OpenAI provider (install the `openai` extra).

```python
async with ctx.scope("app", OpenAIResponsesConfig(model="gpt-4o"), disposables=(OpenAI(),)):
    ...
```
"""

from stagefx.openai._config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai._provider import OpenAI

__all__ = ["OpenAI", "OpenAIChatConfig", "OpenAIResponsesConfig"]
