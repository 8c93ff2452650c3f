"""The real-server harness now lives in :mod:`tether.testing.harness` (shared with the
benchmarks); this module keeps the old import path of the tests."""

from tether.testing.harness import (
    PYTHON_TEMPLATE,
    REPO,
    RunningServer,
    fast_settings,
    free_port,
    running_server,
    serve_app,
)

__all__ = [
    "PYTHON_TEMPLATE",
    "REPO",
    "RunningServer",
    "fast_settings",
    "free_port",
    "running_server",
    "serve_app",
]
