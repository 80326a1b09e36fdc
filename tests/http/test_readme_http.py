"""The README's HTTP transport example runs as written and prints what it says."""

from __future__ import annotations

from pathlib import Path

from tests._readme import Block, assert_prints_what_it_says, readme_blocks, run_block


def _http_block() -> Block:
    (block,) = [
        b for b in readme_blocks() if b.marker == "fragment" and "test_readme_http" in b.argument
    ]
    return block


def test_the_http_transport_example_runs_as_written(tmp_path: Path) -> None:
    block = _http_block()
    completed = run_block(block, tmp_path)
    assert_prints_what_it_says(block, completed.stdout, completed.stderr)
    assert block.expected_output == ["hello, web!"]
