"""Environment helpers: termination functions, the MuJoCo oracle, gymnasium construction."""
