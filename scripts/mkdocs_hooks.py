"""MkDocs hook: fences marked ```` ```bash runnable ```` render as plain ```` ```bash ````.

GitHub reads only the first word of a fence's info string, so ``bash runnable`` shows as bash
there; Python-Markdown's ``fenced_code`` accepts a single word and would leave the block
unrendered. The marker is what ``tests/test_docs_commands.py`` looks for.
"""

from __future__ import annotations

import re

RUNNABLE_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]+) runnable[ \t]*$", re.M
)


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    """Drop the ``runnable`` marker from fence info strings before the page is rendered."""
    return RUNNABLE_FENCE.sub(r"\g<indent>\g<fence>\g<lang>", markdown)
