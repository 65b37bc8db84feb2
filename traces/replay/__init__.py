"""Offline trace replay: the same policies the daemon runs, on a simulated clock."""
