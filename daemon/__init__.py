"""The driftd daemon: configuration, CLI, scheduler, run ledger and alert routing."""
