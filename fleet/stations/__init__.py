"""Transfer stations (中转站): where trucks unload."""
