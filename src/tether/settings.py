"""All tunables of tether in one place. The only module that reads the environment.

Every field can be set with an environment variable ``TETHER_<FIELD>`` (upper case).
Durations are seconds (floats). Tests build ``Settings(...)`` directly with scaled-down
values; nothing else reads ``os.environ`` for configuration.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".tether"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_", extra="ignore")

    # --- server -------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir)
    db_url: str | None = None  # None → sqlite file under data_dir
    host: str = "127.0.0.1"
    port: int = 7080
    public_url: str | None = None  # URL agents use to reach the server; None → http://host:port
    run_api: bool = True
    run_chatd: bool = True
    run_provisioner: bool = True
    cli_config: Path = Field(default_factory=lambda: default_data_dir() / "cli.json")
    bootstrap_admin: str = "admin"

    # --- agents and their status (reference §1.5) --------------------------------------
    agent_ping_interval_s: float = 2.0
    agent_inactive_disconnect_s: float = 6.0
    agent_connection_timeout_s: int = 120
    agent_stop_grace_s: float = 3.0
    startup_script_timeout_s: float = 600.0
    agent_reconnect_max_backoff_s: float = 2.0

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
    mcp_server_connect_timeout_s: float = 30.0

    # --- chatd: binding and dial (DESIGN §4.4; reference §7 values are upper bounds) -----
    dial_validation_delay_s: float = 0.25
    dial_timeout_s: float = 10.0
    agent_request_timeout_s: float = 30.0
    agent_connect_timeout_s: float = 0.3
    mcp_discovery_timeout_s: float = 35.0
    instruction_lookup_timeout_s: float = 5.0
    agent_ready_timeout_s: float = 120.0
    agent_ready_attempt_s: float = 5.0
    agent_ready_retry_s: float = 2.0

    # --- chatd: worker --------------------------------------------------------------------
    worker_poll_s: float = 1.0
    worker_max_claim: int = 10
    # Replica takeover (DESIGN §7): a dead replica's chat runs again elsewhere within
    # stale_after_s + stale_sweep_s (≤ 12 s). Same on SQLite: a worker never sweeps its own
    # live turns, so a loaded single process cannot take a chat over from itself.
    heartbeat_s: float = 2.0
    stale_after_s: float = 10.0
    stale_sweep_s: float = 2.0
    max_queued_messages: int = 20
    max_steps_per_turn: int = 200
    provider_max_retries: int = 3
    provider_retry_base_s: float = 1.0
    subagent_wait_default_s: float = 300.0
    chat_workspace_ttl_ms: int = 0

    # --- LLM ------------------------------------------------------------------------------
    model: str = "python:tether.llm.scripted:demo_model"
    openai_base_url: str | None = None

    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'tether.db'}"

    def server_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"
