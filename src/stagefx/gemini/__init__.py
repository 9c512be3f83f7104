"""The Gemini provider (install the `gemini` extra).

```python
async with ctx.scope("app", GeminiConfig(model="gemini-2.5-flash"), disposables=(Gemini(),)):
    ...
```
"""

try:  # the provider's SDK: fail here, saying what to install
    import httpx2
    from google import genai
except ImportError as _import_error:
    raise ImportError(
        "stagefx.gemini needs the google-genai client: install the `gemini` extra with "
        'pip install "stagefx[gemini]"'
    ) from _import_error

from stagefx._public import publish as _publish
from stagefx.gemini._config import GeminiConfig
from stagefx.gemini._provider import Gemini

del genai, httpx2  # imported above only to check they are installed

__all__ = ["Gemini", "GeminiConfig"]

_publish(__name__, globals(), __all__)
