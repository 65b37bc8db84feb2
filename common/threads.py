"""Thread pools sized for small, shared machines, set once when the CLI starts.

OpenMP (scikit-learn's histogram gradient boosting), BLAS (numpy) and torch size their
pools to every core by default. On a small machine shared with other work those threads
spin against each other: ``quantile-gbm`` on a 2-core machine under load took over 240 s
with the default pools and 48 s with ``OMP_NUM_THREADS=1`` (issue 13; our own figures and
the command that made them are in ``docs/cli.md``).

Which size wins, first match:

1. ``OMP_NUM_THREADS`` when set (the standard variable; it also sizes the others unless
   they are set themselves),
2. ``TIDEWISE_THREADS``,
3. :func:`default_threads`: half the cores this process may use, between 1 and 4.

``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set by the user are kept. The variables
must be set before numpy, scikit-learn or torch load their libraries, which is why
:func:`apply_thread_defaults` runs first thing in :func:`service.cli.main`; a library
already loaded is sized through torch's and threadpoolctl's own calls instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

from common.errors import ConfigError

#: The variables set (each only when not set already).
POOL_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Tidewise's own knob, read when OMP_NUM_THREADS is not set.
TIDEWISE_VAR = "TIDEWISE_THREADS"
#: The default never exceeds this many threads: the models' fits are small, and more
#: threads than this bought nothing in our measurements.
MAX_DEFAULT = 4


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_threads(cores: int) -> int:
    """Threads per pool on a machine with ``cores`` usable cores: half, between 1 and 4."""
    return max(1, min(MAX_DEFAULT, cores // 2))


def _parse(name: str, raw: str) -> int:
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number of threads >= 1")
    return n


def resolve_threads(environ: MutableMapping[str, str], cores: int | None = None
                    ) -> tuple[int, str]:
    """Return the thread count to use and where it came from (a variable, or ``default``).

    Raises:
        ConfigError: the variable that decides is not a whole number >= 1.

    """
    for name in ("OMP_NUM_THREADS", TIDEWISE_VAR):
        raw = environ.get(name)
        if raw is not None and raw.strip():
            return _parse(name, raw), name
    return default_threads(usable_cores() if cores is None else cores), "default"


def apply_thread_defaults(environ: MutableMapping[str, str] | None = None) -> tuple[int, str]:
    """Size the OpenMP/BLAS/torch thread pools (see the module doc); return (n, source).

    The pool variables are set in ``environ`` (default ``os.environ``, so child processes
    inherit them) where not set already.

    Raises:
        ConfigError: OMP_NUM_THREADS or TIDEWISE_THREADS is not a whole number >= 1.

    """
    env = os.environ if environ is None else environ
    n, source = resolve_threads(env)
    for name in POOL_VARS:
        env.setdefault(name, str(n))
    if environ is None:
        _size_loaded_libraries(n)
    return n, source


def _size_loaded_libraries(n: int) -> None:
    """Pools of libraries already loaded ignore the variables; size them directly."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            return
        threadpool_limits(n)
