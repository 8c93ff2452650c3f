"""tether's domain types: what stores return and services pass around, never raw rows.

``chat`` (chats, their status machine, stored and queued messages), ``workspace``
(workspaces, templates, builds, provisioner jobs, log lines), ``agent`` (workspace agents,
their lifecycle and connection status) and ``user``. These modules import nothing of
tether but :mod:`tether.errors` and each other (docs/architecture.md, import rules).
"""
