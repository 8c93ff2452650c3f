"""Driving chats through the store: see :mod:`tether.testing.harness` (this module keeps
the old import path of the tests)."""

from tether.testing.harness import TERMINAL, ChatDriver

__all__ = ["TERMINAL", "ChatDriver"]
