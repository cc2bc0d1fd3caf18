"""Processing: the group state machine, the SQLite job queue and the async engine."""
