"""Policy optimizers (SAC)."""
