"""pytest plugin: the ``faults`` fixture (filled in by the fault-injection work)."""
