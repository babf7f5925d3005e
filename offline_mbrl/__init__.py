"""offline_mbrl: offline model-based RL (ADMPO-OFF, MOPO) on D4RL, NeoRL and Minari datasets."""

__version__ = "0.1.0"
