"""The Optuna objective of a search and the figures of merit it records."""
