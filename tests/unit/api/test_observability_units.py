"""The pieces of tether.observability on their own: one registry per Metrics, the log ids
of a context, the masking of credentials, the ``metrics_bind`` setting."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from tether.ids import new_token
from tether.observability.logs import JsonFormatter, log_context, log_ids, redact
from tether.observability.metrics import Metrics
from tether.settings import Settings


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("tether.test", logging.INFO, __file__, 1, msg, args, None)


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.binding_repaired()
    assert b"tether_binding_repairs_total 1.0" in one.render()
    assert b"tether_binding_repairs_total 0.0" in two.render()


def test_json_lines_carry_the_ids_of_their_context_only() -> None:
    fmt = JsonFormatter()
    with log_context(chat_id="c1", agent_id=None):
        with log_context(agent_id="a1"):
            inner = json.loads(fmt.format(_record("inside %s", "x")))
        outer = json.loads(fmt.format(_record("outside")))
    assert inner["msg"] == "inside x" and inner["chat_id"] == "c1" and inner["agent_id"] == "a1"
    assert outer["chat_id"] == "c1" and "agent_id" not in outer
    assert "chat_id" not in json.loads(fmt.format(_record("after"))) and log_ids() == {}


@pytest.mark.parametrize(
    "secret", [new_token("tt"), new_token("agt"), "Bearer abc.def-ghi", "bearer tt_short"]
)
def test_credentials_are_masked(secret: str) -> None:
    line = JsonFormatter().format(_record("got %s here", secret))
    assert secret not in line and "[redacted]" in line
    assert "[redacted]" in redact(f"Authorization: {secret}")


def test_plain_ids_are_not_masked() -> None:
    text = "chat 0b3f6c1e-8f7d-4e0a-9d7c-1b2a3c4d5e6f build_start ok"
    assert redact(text) == text


@pytest.mark.parametrize("value", ["9464", "host:", ":9464", "a b:1", "http://x:1"])
def test_metrics_bind_must_be_host_port(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(metrics_bind=value)


@pytest.mark.parametrize("value", ["127.0.0.1:9464", "[::1]:9464", "metrics.internal:80"])
def test_metrics_bind_accepts_host_port(value: str) -> None:
    assert Settings(metrics_bind=value).metrics_bind == value


def test_log_format_is_text_or_json() -> None:
    assert Settings(log_format="json").log_format == "json"
    with pytest.raises(ValidationError):
        Settings(log_format="xml")  # type: ignore[arg-type]
