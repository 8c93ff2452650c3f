"""tether.workspaces.backends."""
