"""The progress of an evaluation's training runs, in units that move, with an ETA that learns from the runs.

The unit is a *member-epoch*: one epoch of one seed's classifier. A group of ``G`` seeds trained together moves
the bar by ``G`` after each of its epochs, so the bar moves every epoch rather than once per group. The budget of
a group is ``G x evaluate.epochs``; a group that stops early (patience) is credited the epochs it did not need.

The ETA: seconds per member-epoch so far (wall clock, validation included) times the member-epochs still expected.
Before any group has finished, every group is expected to run its full budget (an upper bound); after that, each
group is expected to use the share of its budget that the finished groups used. So after the first arm the ETA is
the time one arm took times the arms left, up to the differences between arms' early stopping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def clock_text(seconds: float | None) -> str:
    """``1:02:05``, ``12:05`` or ``?``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress:
    """Member-epochs done and expected for a list of groups (their sizes, in training order)."""

    def __init__(self, groups: list[int], max_epochs: int, clock: Callable[[], float] = time.monotonic):
        self.budgets = [g * max_epochs for g in groups]
        self.max_epochs = max_epochs
        self.total = sum(self.budgets)
        self.clock = clock
        self.start = clock()
        self.index = 0  # the group in training
        self.used = 0  # member-epochs trained, all groups
        self.group_used = 0  # member-epochs trained in the current group
        self.group_epochs = 0  # epochs of the current group
        self.finished_used = 0
        self.finished_budget = 0

    @property
    def done(self) -> int:
        """Member-epochs done or no longer needed (finished groups count in full)."""
        return self.finished_budget + self.group_used

    def epoch(self, epoch: int, members: int) -> int:
        """Epoch ``epoch`` of ``members`` seeds of the current group has finished; returns the bar's advance."""
        self.used += members
        self.group_used += members
        self.group_epochs = epoch
        return members

    def group_done(self) -> int:
        """The current group has finished; returns the bar's advance (its unused budget)."""
        budget = self.budgets[self.index]
        advance = budget - self.group_used
        self.finished_used += self.group_used
        self.finished_budget += budget
        self.index += 1
        self.group_used = 0
        self.group_epochs = 0
        return max(0, advance)

    def expected_share(self) -> float:
        """The share of a group's budget a group is expected to use: 1 before any has finished."""
        return self.finished_used / self.finished_budget if self.finished_budget else 1.0

    def eta(self) -> float | None:
        """Seconds left (``None`` before the first epoch)."""
        if self.used == 0:
            return None
        per_unit = (self.clock() - self.start) / self.used
        share = self.expected_share()
        left = sum(self.budgets[self.index + 1 :]) * share
        if self.index < len(self.budgets):
            left += max(0.0, self.budgets[self.index] * share - self.group_used)
        return left * per_unit

    def elapsed(self) -> float:
        return self.clock() - self.start

    def text(self, what: str) -> str:
        """The bar's words: the group in training, its epoch, elapsed time and time left."""
        n = len(self.budgets)
        return (f"{what}: epoch {self.group_epochs} (at most {self.max_epochs}); group {min(self.index + 1, n)} "
                f"of {n}; {clock_text(self.elapsed())} elapsed, about {clock_text(self.eta())} left")
