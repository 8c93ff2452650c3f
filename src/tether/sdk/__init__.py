"""tether.sdk."""
