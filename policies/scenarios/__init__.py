"""Typed contracts of the three scenarios (vm, serverless, power), shared by replay and daemon.

Each module holds what a policy of its scenario may read and the helpers its policies
share; neither the replay (``traces/replay``) nor the daemon (``service``) is imported here.
"""
