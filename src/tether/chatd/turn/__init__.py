"""One chat turn: history → pydantic-ai step loop with the chat's tools → streamed parts →
persisted messages → final status (docs/behaviour.md §3). The modules, top-down:

- ``runner``: :class:`TurnRunner` runs a turn for the worker; :class:`TurnControl` says why
  the worker cancelled it (interrupt, shutdown, lost);
- ``agents``: the chat's tools and pydantic-ai agent, built once per chat and tool set and
  re-pointed at each turn; the chat's tools and the workspace MCP tools as one toolset;
- ``prepare`` (§3.2): the pre-LLM setup — history, instruction files, workspace MCP tools
  and the admin prompt in parallel, again mid-turn when a workspace becomes ready;
- ``attempts`` (§3.3): provider failures (HTTP 429/5xx) retried with exponential backoff,
  over-budget requests compacted, each time re-running from the persisted history;
- ``steps`` (§3.3): the step loop of one attempt;
- ``events`` (§2.3): model and tool events as ``message_part`` stream events;
- ``recorder``: each model response stored as soon as its stream ends and the tool results
  of a step as soon as the tools have run, so a crash loses at most the step in progress;
  on interrupt, the partial reply and ``interrupted`` results for unanswered calls;
- ``finish`` (§3.3): the turn's usage, then ``finish_turn`` and its events.

Tool failures are results (``tools/base.py``), never turn failures.
"""

from tether.chatd.turn.prepare import Instructions
from tether.chatd.turn.runner import TurnControl, TurnRunner

__all__ = ["Instructions", "TurnControl", "TurnRunner"]
