"""tether.chatd.tools."""
