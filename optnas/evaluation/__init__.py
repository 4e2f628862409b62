"""Evaluation: scoring a candidate (inherited weights, fine-tuning, BN recalibration, the
validation split), early-exit figures, flatness under weight noise, OOD corruption errors."""
