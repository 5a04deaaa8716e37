"""The README's Python example must run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import onefit

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "'conv7' is not allowed" in out
    assert "val_smallest_accuracy" in out  # the training example ran and reported


def test_readme_family_table_lists_every_family() -> None:
    table = README.read_text().split("### Search spaces", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)`", table, flags=re.M))
    assert listed == set(onefit.list_supernets())
