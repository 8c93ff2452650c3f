"""The pieces of tether.observability on their own: one registry per Metrics, the log ids
of a context, the masking of credentials, the ``metrics_bind`` setting."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time

import pytest
from pydantic import ValidationError

from tether.cancellation import cancel_and_wait
from tether.ids import new_token
from tether.observability.logs import JsonFormatter, log_context, log_ids, redact
from tether.observability.loopwatch import LoopWatch
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


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_count", labels)
    return value or 0.0


def _buckets_at_or_above(metrics: Metrics, name: str, bound: float) -> float:
    """Observations of histogram ``name`` greater than ``bound`` (a bucket bound)."""
    total = metrics.registry.get_sample_value(f"{name}_count") or 0.0
    below = metrics.registry.get_sample_value(f"{name}_bucket", {"le": str(bound)}) or 0.0
    return total - below


async def test_the_loop_watch_sees_a_callback_that_holds_the_loop() -> None:
    """Issue #12: a callback that holds the loop 150 ms (a blocking sleep) shows in
    ``tether_event_loop_lag_seconds`` as a lag past 100 ms (observability/loopwatch.py)."""
    metrics = Metrics()
    watch = asyncio.create_task(LoopWatch(metrics, interval_s=0.01).run())
    try:
        await asyncio.sleep(0.05)
        before = _buckets_at_or_above(metrics, "tether_event_loop_lag_seconds", 0.1)
        asyncio.get_running_loop().call_soon(time.sleep, 0.15)
        await asyncio.sleep(0.05)
        assert _buckets_at_or_above(metrics, "tether_event_loop_lag_seconds", 0.1) >= before + 1
        assert _count(metrics, "tether_event_loop_lag_seconds") >= 5  # it ticks on
    finally:
        await cancel_and_wait(watch)


async def test_the_loop_watch_times_garbage_collections_while_it_runs() -> None:
    metrics = Metrics()
    watch = asyncio.create_task(LoopWatch(metrics, interval_s=0.01).run())
    await asyncio.sleep(0)  # the watch starts
    try:
        gc.collect(2)
        assert _count(metrics, "tether_gc_pause_seconds", generation="2") >= 1
    finally:
        await cancel_and_wait(watch)
    before = _count(metrics, "tether_gc_pause_seconds", generation="2")
    gc.collect(2)  # stopped: its callback is gone
    assert _count(metrics, "tether_gc_pause_seconds", generation="2") == before
