"""`smartcity --help` and every subcommand's help explain themselves."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from smartcity.cli import app


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], "smartcity demo"),
        (["db"], "migrate"),
        (["db", "migrate"], "pending migration"),
        (["simulate"], "lighting"),
        (["simulate", "lighting"], "dusk"),
        (["ingest"], "acknowledged"),
        (["api"], "OpenAPI"),
        (["demo"], "Ctrl-C"),
    ],
)
def test_help(args: list[str], expect: str) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert expect in " ".join(result.output.split())


def test_unknown_city_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["simulate", "lighting", "--city", "atlantis"])
    assert result.exit_code != 0
    assert "unknown city 'atlantis'" in str(result.exception)
