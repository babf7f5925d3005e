"""Algorithms: offline model-based loop (ADMPO-OFF, MOPO), collection, transition weighting."""
