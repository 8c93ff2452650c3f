"""CLI value parsing and the config file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer

from tether.cli.config import CliConfig, load_config, save_config
from tether.cli.exec_cmd import command_line
from tether.cli.parse import parse_duration_ms, parse_params


@pytest.mark.parametrize(
    ("text", "ms"),
    [("90s", 90_000), ("2h", 7_200_000), ("1h30m", 5_400_000), ("15", 15_000), ("0", 0)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "2x", "h2", "1h 30m", "-5s", "nan", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration_ms(text)


def test_params() -> None:
    assert parse_params(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(typer.BadParameter):
        parse_params(["novalue"])


def test_command_line_quotes_several_words_only() -> None:
    assert command_line(["echo hi | wc -c"]) == "echo hi | wc -c"
    assert command_line(["sh", "-c", "exit 3"]) == "sh -c 'exit 3'"


def test_config_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cli.json"
    assert load_config(path) == CliConfig()
    save_config(CliConfig(url="http://x", token="t"), path)
    assert load_config(path) == CliConfig(url="http://x", token="t")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
