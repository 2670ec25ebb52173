"""The pace (``qrlogin.admission.Pace``): how much new work a second a worker takes on,
set from its answers' times. A core without I/O, driven here by clocks of its own: no
sleeping, no timing."""

from __future__ import annotations

from itertools import pairwise

import pytest

from qrlogin.admission import (
    BURST,
    BUSY_BURST,
    BUSY_SHARE,
    CALM_FASTER,
    CALM_S,
    FASTER,
    FLOOD_RATIO,
    FLOOR_RATE,
    FORGET_PER_S,
    HEADROOM,
    JUDGED_AT,
    NEVER_SLOW_S,
    SLOWER,
    START_RATE,
    WINDOW_S,
    Pace,
)


class Worker(Pace):
    """A pace whose worker's CPU clock (``cpu_s``) the test runs, as ``window`` does."""

    def __init__(self, slowdown: float) -> None:
        self.cpu_s = 0.0
        super().__init__(slowdown, cpu=lambda: self.cpu_s)


#: Requests for new work in a window that make a flood: many times the pace.
FLOOD = 100


def let_in(pace: Pace, now: float, tries: int) -> int:
    """How many of ``tries`` requests for new work, all at ``now``, it lets in."""
    return sum(pace.admit(now) for _ in range(tries))


def window(
    pace: Worker, now: float, answer_s: float | list[float], answers: int = 20, finished: int = 0,
    busy: float = 1.0, asked: int = 0,
) -> float:  # fmt: skip
    """One window of ``answers`` answered in ``answer_s`` each, or answered in each of the
    times ``answer_s`` lists (``finished`` of them new work), while the worker's loop ran
    for ``busy`` of the window and ``asked`` requests for new work came at its start (a
    flood: many more than the pace), then the next window's start, where the pace judges
    it at the first request for new work (let in or not)."""
    let_in(pace, now, asked)
    times = answer_s if isinstance(answer_s, list) else [answer_s] * answers
    for n, took_s in enumerate(times):
        pace.answered(took_s, n < finished, now)
    now += WINDOW_S + 1e-9  # just past the window's end, whatever the sums' rounding
    pace.cpu_s += busy * WINDOW_S
    pace.admit(now)
    return now


def test_a_flood_is_let_in_at_the_start_pace_not_all_at_once() -> None:
    pace = Worker(2)
    assert let_in(pace, 0.0, 100) == BURST  # a calm worker's burst at once, then the pace
    assert let_in(pace, 0.09, 100) == int(0.09 * START_RATE)
    assert not pace.admit(0.09)
    # Refusing, it lets fewer in at once, however long the wait; calm again, as many.
    assert let_in(pace, 0.5, 100) == BUSY_BURST
    assert let_in(pace, 0.5 + CALM_S / 2, 100) == BUSY_BURST
    assert let_in(pace, 0.5 + CALM_S / 2 + CALM_S, 100) == BURST


def test_under_a_flood_slow_answers_cut_the_pace_to_a_share_of_what_got_through() -> None:
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)  # fast answers: the fastest window seen is 2 ms
    assert pace.fastest_s == pytest.approx(0.002)
    now = window(pace, now, 0.010, finished=2, asked=FLOOD)  # five times slower; 2 done
    assert pace.rate == pytest.approx(max(FLOOR_RATE, 2 / WINDOW_S * SLOWER))
    for _ in range(30):  # it stays slow with nothing getting through: down to the floor
        now = window(pace, now, 0.010, asked=FLOOD)
    assert pace.rate == FLOOR_RATE


def test_calm_a_window_is_judged_by_its_slowest_tenth_and_two_slow_ones_cut_the_pace() -> None:
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)
    # One stall in twenty answers (a collection, a key made once) is not slow, however often.
    for _ in range(3):
        now = window(pace, now, [0.002] * 19 + [0.050])
    assert pace.rate == START_RATE
    # Three in twenty five times slower: the mean (3.2 ms) is within twice the fastest,
    # but a login of six steps would meet one of them nearly every time. One such window
    # is not enough (a few answers are slow now and then by their mix alone); two in a
    # row cut the pace by SLOWER, not to the little new work a calm load asked.
    slow = [0.002] * 17 + [0.010] * 3
    now = window(pace, now, slow, finished=1)
    assert pace.rate == START_RATE
    now = window(pace, now, slow, finished=1)
    assert pace.rate == pytest.approx(START_RATE * SLOWER)


def test_while_it_refuses_one_slow_answer_in_twenty_is_slow() -> None:
    """Calm, a window is judged by its slowest tenth; refusing new work (a flood), by its
    slowest answer in a hundred: under a flood every slow answer is some admitted login's."""
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)
    now = window(pace, now, [0.002] * 19 + [0.050])  # calm: one stall is not slow
    assert pace.rate == START_RATE
    now = window(pace, now, [0.002] * 19 + [0.050], finished=2, asked=FLOOD)
    assert pace.rate == pytest.approx(max(FLOOR_RATE, 2 / WINDOW_S * SLOWER))
    # Calm again (no refusal for CALM_S), the same window is not slow.
    calm = Worker(2)
    now = window(calm, 0.0, 0.002)
    let_in(calm, now, FLOOD)
    window(calm, now + CALM_S, [0.002] * 19 + [0.050])
    assert calm.rate >= START_RATE


def test_under_a_flood_fast_answers_raise_the_pace_only_while_new_work_is_refused() -> None:
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)
    now = window(pace, now, 0.002)  # no refusal in the window before: no reason to rise
    assert pace.rate == START_RATE
    now = window(pace, now, 0.002, asked=FLOOD)  # refused, with fast answers
    assert pace.rate == pytest.approx(START_RATE * FASTER)


def test_a_calm_load_is_let_in_whole_at_twice_what_it_asks() -> None:
    """A calm load of 40 new logins a second over the start pace (25): the pace climbs, by
    CALM_FASTER a window at most, to HEADROOM times what is asked, and then refuses none."""
    pace = Worker(2)
    now, rates, refused = 0.0, [], []
    for _ in range(50):  # five seconds, one new login every 25 ms, five answers each
        for k in range(4):
            at = now + k * WINDOW_S / 4
            refused.append(not pace.admit(at))
            for n in range(5):
                pace.answered(0.002, n == 0, at)
        now += WINDOW_S
        pace.cpu_s += WINDOW_S
        rates.append(pace.rate)
    assert all(later <= earlier * CALM_FASTER * FASTER for earlier, later in pairwise(rates))
    assert pace.rate == pytest.approx(HEADROOM * 40, rel=0.1)
    assert not any(refused[40:])  # none after its first second


def test_a_flood_after_a_calm_load_starts_at_the_start_pace() -> None:
    """A calm load raised the pace; a flood's first window takes it back to START_RATE, so
    that a flood meets a worker that was busy as it meets an idle one."""
    pace = Worker(2)
    now = 0.0
    for _ in range(30):  # 40 new logins a second
        now = window(pace, now, 0.002, asked=3)  # and the one that ends each window
    assert pace.rate > 2 * START_RATE
    now = window(pace, now, 0.002, asked=FLOOD)  # a flood, with fast answers still
    assert pace.rate == pytest.approx(START_RATE * FASTER)


def test_the_pace_does_not_climb_on_the_memory_of_a_flood() -> None:
    """After a flood the average of the new work asked still remembers it: a calm pace
    climbs to twice the lower of that average and the last window's."""
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)
    for _ in range(20):  # a flood with fast answers: the pace rises by FASTER a window
        now = window(pace, now, 0.002, asked=FLOOD)
    risen = pace.rate
    assert risen == pytest.approx(START_RATE * FASTER**20)
    assert pace.asked_per_s > FLOOD_RATIO * risen
    for _ in range(40):  # it ends: one request for new work a window, 10 a second
        now = window(pace, now, 0.002)
    assert pace.asked_per_s < risen / HEADROOM
    assert pace.rate == pytest.approx(risen)


def test_an_idle_worker_s_slow_window_is_its_mix_not_a_wait() -> None:
    """A window of a few answers is slower than another by what it held (a QR code and its
    PNG against a redemption): a worker whose loop ran for a tenth of the window did not
    make them wait, and is not paced down for them."""
    pace = Worker(2)
    now = window(pace, 0.0, 0.001)  # the fastest window seen: 1 ms
    mixed = [0.001] * 7 + [0.0025] * 3  # three QR codes among ten answers: 2.5x
    for _ in range(3):
        now = window(pace, now, mixed, finished=1, busy=0.1)
    assert pace.rate == START_RATE
    for _ in range(2):  # busy: slow, and two in a row cut the pace
        now = window(pace, now, mixed, finished=1, busy=2 * BUSY_SHARE)
    assert pace.rate == pytest.approx(START_RATE * SLOWER)


def test_too_few_answers_or_answers_fast_in_themselves_are_never_slow() -> None:
    pace = Worker(2)
    now = window(pace, 0.0, 0.0001)  # a fastest window of 0.1 ms
    now = window(pace, now, NEVER_SLOW_S * 0.9)  # nine times slower, still under a ms
    now = window(pace, now, 1.0, answers=JUDGED_AT - 1)  # a second each, but too few
    assert pace.rate == START_RATE


def test_the_fastest_window_is_forgotten_slowly() -> None:
    pace = Worker(2)
    now = window(pace, 0.0, 0.002)
    now += 10.0  # a quiet while: a window of 10 s
    now = window(pace, now, 0.010, asked=FLOOD)  # 2 ms, forgotten by FORGET_PER_S for 10 s
    assert pace.fastest_s == pytest.approx(0.002 * (1 + FORGET_PER_S * 10), rel=0.01)
    assert pace.rate < START_RATE  # 10 ms is still more than twice that


def test_a_slowdown_of_zero_turns_it_off() -> None:
    pace = Worker(0)
    assert let_in(pace, 0.0, 1000) == 1000
    window(pace, 0.0, 1.0, answers=1000)  # and it keeps nothing of the answers
    assert pace.window_answers == 0


def test_only_one_window_of_answers_is_kept_while_no_new_work_comes() -> None:
    pace = Worker(2)
    now = 0.0
    for _ in range(100):  # ten seconds of answers (the steps of logins), no new work
        for _ in range(50):
            pace.answered(0.002, False, now)
        now += WINDOW_S
    assert pace.window_answers == 50
    assert pace.fastest_s == pytest.approx(0.002)  # the windows were judged as they passed
