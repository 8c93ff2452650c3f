"""All tunables of tether in one place. The only module that reads the environment.

Every field can be set with an environment variable ``TETHER_<FIELD>`` (upper case).
Durations are seconds (floats). Tests build ``Settings(...)`` directly with scaled-down
values; nothing else reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".tether"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_", extra="ignore")

    # --- server -------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir)
    db_url: str | None = None  # None → sqlite file under data_dir
    # PostgreSQL's connection pool (db/engine.py): connections kept open; more opened under
    # a burst (each closed again when given back); a connection idle this long is checked
    # before its next use (sooner: used as is)
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_pool_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_ping_after_idle_s: float = Field(default=1.0, ge=0)
    host: str = "127.0.0.1"
    port: int = 7080
    public_url: str | None = None  # URL agents use to reach the server; None → http://host:port
    run_api: bool = True
    run_chatd: bool = True
    run_provisioner: bool = True
    # PostgreSQL: relay every chat stream event to the other replicas (tether.chatd.relay);
    # a lone server may switch it off (its streams then never wait on the bus)
    stream_relay: bool = True
    # an open chat stream's database re-read while this process sees every change of the
    # chat (one SQLite process, or the relay listening; chatd/follow.py), else every 1 s
    stream_fallback_poll_s: float = Field(default=30.0, gt=0)
    cli_config: Path = Field(default_factory=lambda: default_data_dir() / "cli.json")
    bootstrap_admin: str = "admin"
    api_max_body_bytes: int = Field(default=1024 * 1024, gt=0)  # larger bodies → 413
    # garbage collector (src/tether/gctune.py): freeze start-up objects out of the full
    # collections and run young collections every gc_gen0_threshold allocations
    gc_tune: bool = True
    gc_gen0_threshold: int = Field(default=10_000, ge=100, le=1_000_000)
    # young collections per generation-1 collection (CPython's default: 10)
    gc_gen1_threshold: int = Field(default=3, ge=1, le=1_000)
    # and freeze what survives each full collection, unfreezing every gc_unfreeze_interval_s
    # so cycles among frozen objects are freed (src/tether/gcfreeze.py)
    gc_freeze_survivors: bool = True
    gc_unfreeze_interval_s: float = Field(default=3600.0, gt=0)
    # the server's event loop and HTTP parser (src/tether/eventloop.py, httpparser.py): auto is
    # uvloop and httptools when importable; asyncio / h11 are the operator's fallback
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    http_parser: Literal["auto", "h11", "httptools"] = "auto"
    # --- observability (README "Operating tether") ----------------------------------------
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with the work's ids
    # host:port of an unauthenticated /metrics listener (a private interface)
    metrics_bind: str | None = Field(
        default=None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$"
    )

    # --- identity and secrets at rest (docs: tether.serverkey, tether.db.users) -----------
    server_key: SecretStr | None = None  # shared by replicas; else read/created in the file
    server_key_file: Path | None = None  # None → <data_dir>/server.key (0600)
    token_last_used_granularity_s: float = 60.0  # last_used_at is written at most this often
    stream_auth_recheck_s: float = 5.0  # fallback re-check of an open stream's token (lost events)
    # token → user lookups are cached this long (0: every request queries); an identity
    # event drops an entry at once (api/tokencache.py). With one process (SQLite) that is
    # exact; across PostgreSQL replicas the event can reach another replica after the
    # client's next request there, so the cache is off on PostgreSQL unless opted in.
    auth_cache_ttl_s: float = Field(default=5.0, ge=0.0, le=300.0)
    auth_cache_max_entries: int = Field(default=10_000, ge=0, le=1_000_000)
    auth_cache_across_replicas: bool = False  # PostgreSQL: cache too (a NOTIFY's delay)
    ui_session_ttl_s: float = 12 * 3600.0  # web UI sign-in (cookie) lifetime
    ui_link_ttl_s: float = 300.0  # a one-time sign-in link (`tether ui`) is valid this long

    # --- agents and their status (docs/behaviour.md §4.1) -------------------------------
    agent_ping_interval_s: float = 1.0  # both ways on the agent session
    agent_unreachable_after_s: float = 3.0  # no session frame this long → agent_unreachable
    agent_inactive_disconnect_s: float = 6.0
    agent_connection_timeout_s: int = 120
    agent_stop_grace_s: float = 3.0
    startup_script_timeout_s: float = 600.0
    agent_reconnect_max_backoff_s: float = 2.0
    # Local backend sandbox (bubblewrap). unsandboxed: development only, loudly logged.
    unsandboxed: bool = False
    sandbox_uid: int = 65534  # host uid of workspace processes when the server runs as root
    sandbox_ro_paths: list[Path] = Field(default_factory=list)  # also visible, read-only
    sandbox_bwrap: str = "bwrap"  # the bubblewrap executable

    # Docker backend (docs/docker.md). docker_host: also read from DOCKER_HOST; None → the
    # engine's default socket. Images: `tether images build` caches its rootfs in image_cache_dir.
    docker_host: str | None = Field(
        default=None, validation_alias=AliasChoices("TETHER_DOCKER_HOST", "DOCKER_HOST")
    )
    docker_image: str = "tether-workspace:bookworm"  # when a template names no image
    docker_request_timeout_s: float = 60.0  # one Engine API call
    docker_ready_timeout_s: float = 30.0  # container start → every agent process running
    docker_instance: str = "default"  # label value; installations sharing an engine differ
    docker_agent_uid: int = Field(default=65532, gt=0)  # agents' uid when the server is root
    image_cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache/tether/images")

    # --- builds / provisioner -----------------------------------------------------------
    build_poll_s: float = 2.0
    build_timeout_s: float = 600.0
    provisioner_poll_s: float = 1.0
    ttl_sweep_s: float = 5.0

    # --- agent-side tool defaults -------------------------------------------------------
    exec_default_timeout_s: float = 10.0
    exec_max_timeout_s: float = 3600.0
    exec_output_cap_bytes: int = 32 * 1024
    read_file_default_limit: int = 2000
    instruction_file_cap_bytes: int = 64 * 1024
    mcp_server_connect_timeout_s: float = 30.0  # per server, sent to agents in the manifest
    mcp_server_retry_s: float = 10.0  # a failed server's first backoff (doubles, max 300 s)

    # --- chatd: binding and dial (docs/behaviour.md §7: Coder's values are upper bounds) ---
    dial_validation_delay_s: float = 0.25
    dial_timeout_s: float = 10.0
    agent_request_timeout_s: float = 30.0
    exec_deadline_margin_s: float = 5.0  # a foreground exec's deadline: its timeout + this
    agent_connect_timeout_s: float = 0.3
    # the one agent-client cache (agentconn/clients.py): idle clients kept, and for how long
    agent_clients_max_idle: int = Field(default=64, ge=0)
    agent_client_idle_s: float = Field(default=60.0, gt=0)
    mcp_discovery_timeout_s: float = 35.0
    mcp_first_call_wait_s: float = 2.0  # the first model call waits this long for MCP tools
    instruction_lookup_timeout_s: float = 5.0
    agent_ready_timeout_s: float = 120.0
    agent_ready_attempt_s: float = 5.0
    agent_ready_retry_s: float = 2.0

    # --- chatd: worker --------------------------------------------------------------------
    worker_poll_s: float = 1.0
    # the admin chat settings are cached behind the bus; re-read at least this often
    chat_config_max_age_s: float = 30.0
    worker_max_claim: int = 10
    # Replica takeover (docs/behaviour.md §3.1): a dead replica's chat runs again elsewhere within
    # stale_after_s + stale_sweep_s (≤ 12 s). Same on SQLite: a worker never sweeps its own
    # live turns, so a loaded single process cannot take a chat over from itself.
    heartbeat_s: float = 2.0
    stale_after_s: float = 10.0
    stale_sweep_s: float = 2.0
    # a chat without a turn this long drops its cached agent connection and stream buffer
    worker_chat_idle_s: float = Field(default=300.0, gt=0)
    max_queued_messages: int = 20
    max_steps_per_turn: int = 200
    provider_max_retries: int = 3
    provider_retry_base_s: float = 1.0
    subagent_wait_default_s: float = 300.0
    chat_workspace_ttl_ms: int = 0
    # long chats (chatd/context.py, compaction.py, historycache.py)
    history_cache_max_messages: int = Field(default=20_000, ge=0, le=10_000_000)
    # and by the approximate size of the cached messages' stored JSON (historycache.py)
    history_cache_max_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    context_keep_steps: int = Field(default=4, ge=1, le=100)  # kept verbatim (elision, cut)

    # chat parity (issue #14): images, automatic titles, per-user usage limits
    image_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)  # one image, decoded
    image_max_count: int = Field(default=4, ge=0, le=32)  # images per message (0: none)
    # the body limit of the routes that take a message (create, send, edit); others keep
    # api_max_body_bytes
    chat_message_max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    title_generation_timeout_s: float = Field(default=30.0, gt=0)  # automatic titles
    usage_limits_refresh_s: float = Field(default=10.0, ge=0)  # other replicas see a change

    # --- LLM ------------------------------------------------------------------------------
    # ``model`` is the operator's shortcut: one model (named "default") from a spec string.
    # ``models_file`` (YAML/JSON) and ``models_json`` (the same document, inline) define named
    # models; ``default_model`` names the default (else the first one). See tether.llm.config.
    model: str = "python:tether.llm.scripted:demo_model"
    openai_base_url: str | None = None
    models_file: Path | None = None
    # defaults of a model's bounds when its config leaves them out (retries: provider_* above)
    model_request_timeout_s: float = 120.0
    model_connect_timeout_s: float = 10.0
    models_json: str | None = None
    default_model: str | None = None

    @model_validator(mode="after")
    def _liveness_bound_covers_pings(self) -> Settings:
        # A bound of less than two ping intervals would mark healthy agents unreachable.
        if self.agent_unreachable_after_s < 2 * self.agent_ping_interval_s:
            raise ValueError(
                "agent_unreachable_after_s must be at least twice agent_ping_interval_s"
            )
        return self

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.data_dir / 'tether.db'}"

    def server_key_path(self) -> Path:
        return self.server_key_file or self.data_dir / "server.key"

    def server_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


def env_value(name: str) -> str | None:
    """The value of the environment variable ``name`` (a model's API key source), or None.

    The one other place that reads the environment: a configured model names the variable
    holding its key, and the key is read when the model is built, never stored."""
    value = os.environ.get(name)
    return value or None
