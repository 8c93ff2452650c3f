"""What an operator sees of a running tether: Prometheus metrics (:mod:`.metrics`, served by
``api/metrics.py``) and structured logs carrying the ids of the work at hand (:mod:`.logs`)."""
