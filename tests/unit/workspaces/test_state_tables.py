"""The state machines of the workspace and chat systems, pinned as whole tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.domain.agent import LIFECYCLE_TRANSITIONS, Lifecycle, lifecycle_sources
from tether.domain.chat import CHAT_TRANSITIONS, ChatStatus, sources_of
from tether.domain.workspace import JobStatus, derive_job_status

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("completed", "canceled", "started", "error", "expected"),
    [
        (T, None, T, "boom", JobStatus.FAILED),
        (T, T, T, "boom", JobStatus.FAILED),  # error precedes cancel
        (T, T, T, None, JobStatus.CANCELED),
        (T, None, T, None, JobStatus.SUCCEEDED),
        (None, None, T, "boom", JobStatus.FAILED),
        (None, T, T, "boom", JobStatus.FAILED),
        (None, T, T, None, JobStatus.CANCELING),
        (None, None, None, None, JobStatus.PENDING),
        (None, None, T, None, JobStatus.RUNNING),
    ],
)
def test_job_status_is_derived_as_reference_1_4(completed, canceled, started, error, expected):
    assert derive_job_status(completed, canceled, started, error) is expected


def test_in_progress_statuses():
    assert {s for s in JobStatus if s.in_progress} == {
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.CANCELING,
    }


def test_lifecycle_table_is_pinned():
    table = {k.value: sorted(v.value for v in vs) for k, vs in LIFECYCLE_TRANSITIONS.items()}
    assert table == {
        "created": ["off", "ready", "shutting_down", "starting"],
        "starting": ["off", "ready", "shutting_down", "start_error", "start_timeout"],
        "ready": ["off", "shutting_down"],
        "start_error": ["off", "shutting_down"],
        "start_timeout": ["off", "ready", "shutting_down"],
        "shutting_down": ["off", "shutdown_error", "shutdown_timeout"],
        "shutdown_timeout": ["off"],
        "shutdown_error": ["off"],
        "off": [],
    }
    assert Lifecycle.OFF not in lifecycle_sources(Lifecycle.STARTING)
    assert lifecycle_sources(Lifecycle.READY) == {
        Lifecycle.CREATED,
        Lifecycle.STARTING,
        Lifecycle.START_TIMEOUT,
    }


def test_chat_status_table_is_pinned():
    table = {k.value: sorted(v.value for v in vs) for k, vs in CHAT_TRANSITIONS.items()}
    assert table == {
        "waiting": ["pending"],
        "error": ["pending"],
        "pending": ["running", "waiting"],
        "running": ["error", "interrupting", "pending", "waiting"],
        "interrupting": ["error", "pending", "waiting"],
    }
    assert sources_of(ChatStatus.RUNNING) == {ChatStatus.PENDING}
