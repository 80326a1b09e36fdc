"""Every Python block of README.md runs as written and prints what it says it prints.

How blocks are found and marked is in `tests._readme`: a block runs alone in a fresh
interpreter unless the line before its fence marks it as a fragment (with a reason) or
as one process of several (those run in the tests of the transport they need,
``tests/tcp/test_readme.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._readme import Block, assert_prints_what_it_says, blocks, readme_blocks, run_block

BLOCKS = readme_blocks()
ALONE = [block for block in BLOCKS if block.marker is None]


@pytest.mark.parametrize("block", ALONE, ids=[block.name for block in ALONE])
def test_readme_block_runs_and_prints_what_it_says(block: Block, tmp_path: Path) -> None:
    completed = run_block(block, tmp_path)
    assert_prints_what_it_says(block, completed.stdout, completed.stderr)


def test_readme_blocks_that_run_alone_include_the_quick_start() -> None:
    # Guards the parametrized test above against a parser that silently finds nothing.
    assert any('soldier = BasicMessageListener("soldier")' in block.code for block in ALONE)
    assert len(ALONE) >= 5


def test_every_readme_block_marker_is_known() -> None:
    for block in BLOCKS:
        assert block.marker in (None, "fragment", "process"), block.name
        if block.marker == "fragment":
            assert block.argument, f"{block.name}: a fragment marker needs a reason"


def test_readme_processes_are_one_server_and_one_client() -> None:
    roles = [block.argument for block in BLOCKS if block.marker == "process"]
    assert roles == ["server", "client"]


# ---------------------------------------------------------------------------- the parser

MARKDOWN = """\
Text.

```python
print("a")  # a
x = 1
print(x)  # 1
```

<!-- fragment: needs a listener defined elsewhere -->
```python
dispatcher.register(listener)
```

<!-- process: server -->
```python
serve()
```

```bash
echo not python
```
"""


def test_parser_finds_python_blocks_with_their_line_and_marker() -> None:
    found = blocks(MARKDOWN)
    assert [(b.line, b.marker, b.argument) for b in found] == [
        (3, None, ""),
        (10, "fragment", "needs a listener defined elsewhere"),
        (15, "process", "server"),
    ]
    assert found[1].code == "dispatcher.register(listener)\n"


def test_parser_reads_the_expected_output_from_print_comments() -> None:
    assert blocks(MARKDOWN)[0].expected_output == ["a", "1"]
