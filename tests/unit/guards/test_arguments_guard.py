"""The arguments guard dead-letters, unrun, a message whose arguments do not fit the task's
signature; fitting arguments run. Its signature cache is shared by a worker's threads."""

from __future__ import annotations

from sandbox_platform.guards.builtin import ArgumentsGuard
from sandbox_platform.testing import run_concurrently
from tests.unit.guards.conftest import MakeHarness


def charge(account: str, amount: int, *, currency: str = "EUR") -> None: ...


def test_arguments_that_do_not_fit_are_dead_lettered_at_once(make_harness: MakeHarness) -> None:
    harness = make_harness(ArgumentsGuard(), name="t.charge", body=charge)
    for args, kwargs in [(("acct",), {}), (("acct", 1, 2), {}), (("acct", 1), {"cur": "x"})]:
        outcome = harness.before_run(harness.job(args, kwargs))
        assert outcome is not None
        assert (outcome.kind, outcome.reason, outcome.failed) == (
            "dead_letter",
            "invalid_arguments",
            True,
        )
        assert isinstance(outcome.error, TypeError)
        assert str(outcome.error).startswith("t.charge: the message's arguments do not fit: ")


def test_arguments_that_fit_run(make_harness: MakeHarness) -> None:
    harness = make_harness(ArgumentsGuard(), body=charge)
    assert harness.before_run(harness.job(("acct", 5))) is None
    kwargs = {"account": "a", "amount": 1, "currency": "X"}
    assert harness.before_run(harness.job((), kwargs)) is None


def test_many_threads_check_arguments_through_one_guard(make_harness: MakeHarness) -> None:
    harness = make_harness(ArgumentsGuard(), body=charge)

    def check(n: int) -> bool:
        args = ("acct", n) if n % 2 else ("acct",)
        return harness.before_run(harness.job(args)) is None

    assert run_concurrently(check, threads=8, times=200) == [n % 2 == 1 for n in range(200)]
