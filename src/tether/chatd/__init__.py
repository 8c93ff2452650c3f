"""tether.chatd."""
