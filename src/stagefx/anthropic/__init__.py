"""The Anthropic provider (install the `anthropic` extra).

```python
async with ctx.scope(
    "app", AnthropicConfig(model="claude-sonnet-4-5", max_tokens=1024), disposables=(Anthropic(),)
):
    ...
```
"""

try:  # the provider's SDK: fail here, saying what to install
    import anthropic
except ImportError as _import_error:
    raise ImportError(
        "stagefx.anthropic needs the anthropic client: install the `anthropic` extra with "
        'pip install "stagefx[anthropic]"'
    ) from _import_error

from stagefx._public import publish as _publish
from stagefx.anthropic._config import AnthropicConfig
from stagefx.anthropic._provider import Anthropic

del anthropic  # imported above only to check it is installed

__all__ = ["Anthropic", "AnthropicConfig"]

_publish(__name__, globals(), __all__)
