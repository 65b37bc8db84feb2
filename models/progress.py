"""Progress inside long fits, reported to whoever shows it (models/ knows no CLI).

``Estimator.fit(train, validation, progress=callback)`` calls ``callback(FitEvent)`` as
training goes: ``harmony`` when a member starts (epoch 0) and after every epoch (naming
the ensemble member) and every member, ``quantile-gbm`` before the first and after every
quantile model, and every estimator once before and once after the calibration pass.
The callback runs on the training thread between steps, so it must be quick; one that
raises stops the fit.

:class:`FitBar` is the display the commands use: one tqdm line whose postfix follows the
events (``evaluate: 0/3 [01:25<?, ?fit/s, harmony member 1/3 epoch 4/30]``); the dataset
is named too when a folder of several is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitEvent:
    """One step of a fit.

    Attributes:
        model: the estimator's registered name.
        stage: what is counted: ``"epoch"``, ``"member"``, ``"quantile model"``,
            ``"calibration"``.
        done: steps of this stage finished (``0`` when the stage starts).
        total: steps of this stage at most (an early-stopped harmony member ends below it).
        detail: context, e.g. ``"member 2/3"`` for an epoch of an ensemble member.

    """

    model: str
    stage: str
    done: int
    total: int
    detail: str = ""

    def text(self) -> str:
        """``"member 2/3 epoch 7/30"``: the detail first, then the count."""
        count = f"{self.stage} {self.done}/{self.total}"
        return f"{self.detail} {count}" if self.detail else count


#: The callback an estimator reports to.
ProgressFn = Callable[[FitEvent], None]


def report(progress: ProgressFn | None, event: FitEvent) -> None:
    """Call ``progress`` with ``event`` when there is a callback."""
    if progress is not None:
        progress(event)


class FitBar:
    """A tqdm bar over several fits whose postfix shows the running fit's progress.

    Args:
        total: fits in all.
        desc: the bar's label.
        unit: what a fit is called on the bar.
        enabled: False shows nothing (``--no-progress``).
        lazy: show nothing until the first event, so a command that fails on its input
            before training prints only its ``error:`` line.
        file: where the bar is written (default stderr when it appears).

    """

    def __init__(self, total: int, desc: str, unit: str = "fit", *, enabled: bool = True,
                 lazy: bool = False, file: Any = None) -> None:  # noqa: ANN401 - a stream
        self._args = {"total": total, "desc": desc, "unit": unit, "disable": not enabled,
                      "file": file}
        self._bar: Any = None
        self._label = ""
        if not lazy:
            self._show()

    def _show(self) -> Any:  # noqa: ANN401 - a tqdm bar
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(**self._args)
        return self._bar

    def start(self, label: str) -> None:
        """Show that a fit named ``label`` (``"dataset:model"``) starts."""
        self._label = label
        if self._bar is not None:
            self._bar.set_postfix_str(label)

    def event(self, ev: FitEvent) -> None:
        """Show ``ev`` beside the running fit's label (a :data:`ProgressFn`)."""
        self._show().set_postfix_str(f"{self._label} {ev.text()}".strip())

    def done(self) -> None:
        """Count the running fit as finished."""
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar (leaves its last line on the terminal)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> FitBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
