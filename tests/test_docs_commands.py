"""Every block marked runnable in the README and the docs runs, as written, and exits 0.

A fence whose info string is ```` ```bash runnable ```` (GitHub shows it as bash; the MkDocs
hook in ``scripts/mkdocs_hooks.py`` drops the marker) holds ``tidewise`` commands, and
variable assignments they use, on bundled trace slices only. Each block runs in a fresh empty
folder with a clean ``TIDEWISE_*`` environment (so ``./tidewise.db`` and ``./tidewise-models``
are its own), through bash with ``set -euo pipefail``, ``tidewise`` being this checkout's CLI
(``python -m service.cli``). The same block in two places runs once.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
TIMEOUT_S = 240  # one block; the whole runnable set takes well under that on 2 cores


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str

    @property
    def where(self) -> str:
        name = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{name}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, dedented to its fence."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or "`" in m.group("info"):
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append(Block(path, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def runnable_blocks() -> list[Block]:
    seen: dict[str, Block] = {}
    for path in DOCS:
        for block in fenced_blocks(path):
            if "runnable" in block.info.split()[1:]:
                seen.setdefault(block.text, block)
    return list(seen.values())


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined; blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (ln.strip() for ln in joined.splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def problems_of(block: Block) -> list[str]:
    """Why a block may not carry the runnable mark (empty: it may)."""
    out = []
    if block.info.split()[0] != "bash":
        out.append(f"{block.where}: a runnable block is bash, not {block.info.split()[0]!r}")
    commands = 0
    for line in logical_lines(block.text):
        words = shlex.split(line, comments=True)
        if words and words[0] == "tidewise":
            commands += 1
            if "shared/data" in line:
                out.append(f"{block.where}: {line!r} reads ../shared/data; use a bundled slice")
        elif not words or not all(ASSIGNMENT.match(w) for w in words[words[0] == "export":]):
            out.append(f"{block.where}: {line!r} is neither a tidewise command nor an assignment")
    if not commands:
        out.append(f"{block.where}: no tidewise command")
    return out


BLOCKS = runnable_blocks()


def test_the_readme_and_the_docs_carry_runnable_blocks():
    files = {b.path.name for b in BLOCKS}
    assert "README.md" in files  # the README's "Try it"
    assert len(files - {"README.md"}) >= 2, files  # and commands in the docs pages


def test_the_mark_admits_only_tidewise_commands_on_bundled_slices(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash runnable\nP=hpa   # ok\ntidewise replay --trace azure-llm-code \\\n"
        "    --policy $P --out out/x\n```\n"
        "```bash runnable\ncurl localhost:8080/metrics\n"
        "tidewise replay --trace ../shared/data/x.csv\n```\n"
        "```python runnable\ntidewise x\n```\n"
        "```bash\ncurl not marked\n```\n"
    )
    ok, bad, python, unmarked = fenced_blocks(page)
    assert problems_of(ok) == [] and unmarked.info == "bash"
    assert [p.split(": ", 1)[1] for p in problems_of(bad)] == [
        "'curl localhost:8080/metrics' is neither a tidewise command nor an assignment",
        "'tidewise replay --trace ../shared/data/x.csv' reads ../shared/data; use a bundled slice",
    ]
    assert problems_of(python)[0].endswith("a runnable block is bash, not 'python'")


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_a_runnable_block_runs(block: Block, tmp_path: Path):
    assert problems_of(block) == []
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "tidewise"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m service.cli "$@"\n')
    wrapper.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEWISE_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.text],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"{block.where}: exit {proc.returncode}\n{block.text}\n{proc.stderr[-3000:]}"
    )
