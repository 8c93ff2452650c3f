"""tether.api.routers."""
