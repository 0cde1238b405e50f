"""Faust agents, timers and rebalance hooks (found by app autodiscovery)."""
