"""The OpenAI provider (install the `openai` extra).

```python
async with ctx.scope("app", OpenAIResponsesConfig(model="gpt-4o"), disposables=(OpenAI(),)):
    ...
```
"""

from stagefx.openai.config import OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.openai.provider import OpenAI

__all__ = ["OpenAI", "OpenAIChatConfig", "OpenAIResponsesConfig"]
