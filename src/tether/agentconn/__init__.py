"""tether.agentconn."""
