"""Studies: creating, resuming, running and reading search studies in an Optuna storage."""
