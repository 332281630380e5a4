"""The per-process registry of what rides with acknowledgements: completions, run records."""

from __future__ import annotations

import os

from sandbox_platform.broker import ack_riders
from sandbox_platform.broker.ack_riders import Completion, Rider, Settled

DONE = Completion("sp:idem:r:{k}", 7, '{"ok": true}')


def test_a_completion_rides_only_with_a_tag_this_process_opened_and_has_not_acknowledged() -> None:
    assert not ack_riders.attach("never-opened", DONE)
    assert not ack_riders.attach(None, DONE)
    ack_riders.open_delivery("t1")
    assert ack_riders.attach("t1", DONE)
    assert ack_riders.take("t1") == Rider(DONE)  # the acknowledgement carries it, closes the tag
    assert ack_riders.take("t1") is None
    assert not ack_riders.attach("t1", DONE)  # acknowledged already (e.g. early ack): refused


def test_a_tag_with_nothing_attached_is_closed_with_nothing_to_carry() -> None:
    ack_riders.open_delivery("t2")
    assert ack_riders.take("t2") is None
    assert not ack_riders.attach("t2", DONE)


def test_closing_the_channel_hands_back_what_rides_and_forgets_every_tag() -> None:
    ack_riders.open_delivery("t3")
    ack_riders.open_delivery("t4")
    assert ack_riders.attach("t4", DONE)
    assert ack_riders.forget_all() == [Rider(DONE)]
    assert ack_riders.take("t3") is None and ack_riders.take("t4") is None


def test_a_forked_child_cannot_attach_to_its_parents_deliveries() -> None:
    ack_riders.open_delivery("t5")  # the parent (prefork's main process) delivered it
    pid = os.fork()
    if pid == 0:  # the child: the parent acknowledges t5, so nothing may ride with it here
        os._exit(0 if not ack_riders.attach("t5", DONE) and ack_riders.take("t5") is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ack_riders.take("t5") is None  # still open in the parent, with nothing attached


def test_the_script_arguments_are_key_token_result() -> None:
    assert DONE.args() == ["sp:idem:r:{k}", "7", '{"ok": true}']


def test_a_run_record_rides_alone_or_with_the_completion() -> None:
    ack_riders.open_delivery("t6")
    assert ack_riders.attach_record("t6", "sp:runs:{sandbox}:outbox", '{"state": "failed"}')
    assert ack_riders.take("t6") == Rider(None, "sp:runs:{sandbox}:outbox", '{"state": "failed"}')
    assert Rider(None, "o", "r").args() == ["", "", "", "o", "r"]
    ack_riders.open_delivery("t7")
    assert ack_riders.attach("t7", DONE) and ack_riders.attach_record("t7", "o", "r")
    rider = ack_riders.take("t7")
    assert rider is not None and rider.args() == [*DONE.args(), "o", "r"]
    assert not ack_riders.attach_record("t7", "o", "r")  # acknowledged already


def test_a_settlement_tells_its_callbacks_once_whenever_they_come() -> None:
    completion = Completion("sp:idem:r:{s}", 1, "1")
    seen: list[Settled] = []
    completion.settlement.then(seen.append)
    assert completion.settlement.peek() is None
    settled = completion.settle(b"broken: WRONGTYPE Operation against a key")
    assert settled == Settled(
        "sp:idem:r:{s}", stored=False, error="WRONGTYPE Operation against a key"
    )
    completion.settle(1)  # settles once
    completion.settlement.then(seen.append)  # after: called at once
    assert seen == [settled, settled] and completion.settlement.peek() == settled
    assert Completion("k", 1, "1").settle(0).stale
    assert Completion("k", 1, "1").settle(1).stored
