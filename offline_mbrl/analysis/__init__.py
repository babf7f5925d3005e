"""Analysis tools: compounding error, calibration, TOM weights, score tables, plots."""
