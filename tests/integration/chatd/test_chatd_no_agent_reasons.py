"""docs/behaviour.md §5.1: a workspace without a usable agent tells the model *why*, each
with its own code and remediation: deleted (create a new one), its last build failed (fix the
cause), still building (start_workspace waits) — not a blanket "stopped"."""

from __future__ import annotations

from chatd_env import PYTHON_TEMPLATE, Chatd

from tether.domain.chat import ChatStatus
from tether.domain.workspace import Transition
from tether.llm.scripted import Call, Say, script_model

EXECUTE = [Call("execute", {"command": "true"}), Say("done")]


async def test_deleted_workspace_is_workspace_deleted(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    delete = await chatd.transition(ws.id, Transition.DELETE)
    await chatd.graph.workspaces.wait_for_build(delete.id, timeout_s=30)
    chatd.start_worker()
    chat = await chatd.new_chat("go", script_model(EXECUTE), workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING  # a tool error never fails the turn
    [result] = await chatd.results(chat.id, "execute")
    assert result["is_error"] and result["error_code"] == "workspace_deleted"
    assert "create_workspace" in result["remediation"]


async def test_failed_build_is_build_failed_with_the_job_error(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    broken = PYTHON_TEMPLATE.read_text().replace("backend: local", "backend: nowhere")
    await chatd.push_template(broken)
    start = await chatd.transition(ws.id, Transition.START)
    failed = await chatd.graph.workspaces.wait_for_build(start.id, timeout_s=30)
    assert failed.status.value == "failed"
    chatd.start_worker()
    chat = await chatd.new_chat("go", script_model(EXECUTE), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "execute")
    assert result["is_error"] and result["error_code"] == "build_failed"
    assert "nowhere" in result["result"]  # the job's own error text reaches the model


async def test_building_workspace_is_workspace_starting(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    await chatd.pause_provisioner()
    await chatd.transition(ws.id, Transition.START)  # stays pending: nothing runs it
    chatd.start_worker()
    chat = await chatd.new_chat("go", script_model(EXECUTE), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "execute")
    assert result["is_error"] and result["error_code"] == "workspace_starting"
    chatd.resume_provisioner()


async def test_stopped_workspace_is_still_workspace_stopped(chatd: Chatd) -> None:
    ws, _ = await chatd.create_workspace()
    await chatd.stop_workspace(ws.id)
    chatd.start_worker()
    chat = await chatd.new_chat("go", script_model(EXECUTE), workspace_id=ws.id)
    await chatd.wait_status(chat.id)
    [result] = await chatd.results(chat.id, "execute")
    assert (
        result["error_code"] == "workspace_stopped" and "start_workspace" in result["remediation"]
    )
