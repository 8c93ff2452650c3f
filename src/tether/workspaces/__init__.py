"""tether.workspaces."""
