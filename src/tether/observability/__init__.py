"""What an operator sees of a running tether: Prometheus metrics (:mod:`.metrics`, served by
:mod:`.endpoint`) and structured logs carrying the ids of the work at hand (:mod:`.logs`)."""
