"""Puts ``tests/`` on ``sys.path``, as pytest's ``pythonpath = ["tests"]`` does, for the
benchmarks that reuse the tests' environments (their modules import ``support.…``).
Import it before any ``tests.…`` module."""

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.append(TESTS)
