"""tether.agentconn: the server-side client of workspace agents (no database)."""

from tether.agentconn.client import AgentClient
from tether.agentconn.clients import AgentClients
from tether.agentconn.dial import dial

__all__ = ["AgentClient", "AgentClients", "dial"]
