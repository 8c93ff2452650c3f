"""tether: chat with an LLM coding agent that works inside your workspaces."""

__version__ = "0.1.0"
