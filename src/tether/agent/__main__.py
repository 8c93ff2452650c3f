"""``python -m tether.agent``."""

from tether.agent.main import run

run()
