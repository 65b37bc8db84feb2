"""One module per trace format, plus :mod:`traces.loaders.registry` (detection and ``load``)."""
