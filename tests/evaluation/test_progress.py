"""Tests for medgan.evaluation.progress: evaluate's bar moves every epoch and its ETA is right after one arm."""

from __future__ import annotations

import pytest

from medgan.evaluation.progress import RunProgress, clock_text


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _simulate(epochs_per_arm, group=10, max_epochs=100, seconds_per_epoch=3.0):
    """Arms of one group of ``group`` seeds each, stopping after ``epochs_per_arm[i]`` epochs; yields
    (arm index, epoch, ETA, true time left, bar position) after every epoch."""
    clock = FakeClock()
    prog = RunProgress([group] * len(epochs_per_arm), max_epochs, clock)
    total_time = sum(epochs_per_arm) * seconds_per_epoch
    pos = 0
    for i, n in enumerate(epochs_per_arm):
        for e in range(1, n + 1):
            clock.t += seconds_per_epoch
            pos += prog.epoch(e, group)
            yield i, e, prog.eta(), total_time - clock.t, pos, prog
        pos += prog.group_done()
        yield i, n + 1, prog.eta(), total_time - clock.t, pos, prog


def test_bar_moves_every_epoch_and_ends_full():
    steps = list(_simulate([30, 45, 20]))
    positions = [p for *_, p, _ in steps]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)  # moves at every epoch
    prog = steps[-1][-1]
    assert positions[-1] == prog.total == 3 * 10 * 100 and prog.done == prog.total


@pytest.mark.parametrize("epochs", [[30, 45, 20, 35], [40, 30, 30, 50], [25, 25, 25, 25], [30, 20, 40, 30, 25]])
def test_eta_is_within_2x_after_the_first_arm(epochs):
    """The old bar said 2:32:05 for a 15-minute job, then jumped once per group; after the first arm the ETA must
    be within a factor 2 of the time actually left while arms stop early at comparable epochs (checked while a
    quarter of the job or more is left: in the last minutes any factor is a few seconds)."""
    total = sum(epochs) * 3.0
    checked = 0
    for arm, _e, eta, left, _pos, _ in _simulate(epochs):
        if arm >= 1 and left >= total / 4:
            assert left / 2 <= eta <= 2 * left, (arm, eta, left)
            checked += 1
    assert checked > 20


def test_eta_before_any_group_finished_is_an_upper_bound_and_texts():
    first = next(_simulate([30, 30]))
    assert first[2] >= first[3]  # full budget assumed: never too optimistic at the start
    prog = RunProgress([10], 100, FakeClock())
    assert prog.eta() is None and "about ? left" in prog.text("baseline, seeds 0-9")
    assert clock_text(3725) == "1:02:05" and clock_text(65) == "1:05"
