"""What every layer shares: the error hierarchy (``common.errors``).

Nothing here imports ``service``, ``models``, ``policies`` or ``traces``.
"""
