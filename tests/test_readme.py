"""The README's two commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci}\n" in readme


def test_the_readme_starts_with_the_start_command_then_the_test_command():
    blocks = (REPO / "README.md").read_text().split("```sh\n")[1:3]
    start, test = (block.split("\n```")[0] for block in blocks)
    assert "gunicorn app:app" in start and "pip install -e ." in start
    assert "pytest" in test and ".[test]" in test
