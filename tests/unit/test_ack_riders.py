"""What rides with acknowledgements (completions, run records), per channel, reached through
one app's hooks."""

from __future__ import annotations

import gc
import os

from sandbox_platform.broker.ack_riders import Completion, Rider, Settled
from sandbox_platform.broker.hooks import BrokerHooks

DONE = Completion("sp:idem:r:{k}", 7, '{"ok": true}')
HOOKS = BrokerHooks()
CHANNEL = HOOKS.for_channel()  # kept by the channel in the transport


def test_a_completion_rides_only_with_a_tag_this_process_opened_and_has_not_acknowledged() -> None:
    assert not HOOKS.attach("never-opened", DONE)
    assert not HOOKS.attach(None, DONE)
    CHANNEL.open("t1")
    assert HOOKS.attach("t1", DONE)
    assert CHANNEL.take("t1") == Rider(DONE)  # the acknowledgement carries it, closes the tag
    assert CHANNEL.take("t1") is None
    assert not HOOKS.attach("t1", DONE)  # acknowledged already (e.g. early ack): refused


def test_a_tag_with_nothing_attached_is_closed_with_nothing_to_carry() -> None:
    CHANNEL.open("t2")
    assert CHANNEL.take("t2") is None
    assert not HOOKS.attach("t2", DONE)


def test_closing_the_channel_hands_back_what_rides_and_forgets_every_tag() -> None:
    CHANNEL.open("t3")
    CHANNEL.open("t4")
    assert HOOKS.attach("t4", DONE)
    assert CHANNEL.forget_all() == [Rider(DONE)]
    assert CHANNEL.take("t3") is None and CHANNEL.take("t4") is None


def test_a_forked_child_cannot_attach_to_its_parents_deliveries() -> None:
    CHANNEL.open("t5")  # the parent (prefork's main process) delivered it
    pid = os.fork()
    if pid == 0:  # the child: the parent acknowledges t5, so nothing may ride with it here
        os._exit(0 if not HOOKS.attach("t5", DONE) and CHANNEL.take("t5") is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert CHANNEL.take("t5") is None  # still open in the parent, with nothing attached


def test_the_script_arguments_are_key_token_result() -> None:
    assert DONE.args() == ["sp:idem:r:{k}", "7", '{"ok": true}']


def test_a_run_record_rides_alone_or_with_the_completion() -> None:
    CHANNEL.open("t6")
    assert HOOKS.attach_record("t6", "sp:runs:{sandbox}:outbox", '{"state": "failed"}')
    assert CHANNEL.take("t6") == Rider(None, "sp:runs:{sandbox}:outbox", '{"state": "failed"}')
    assert Rider(None, "o", "r").args() == ["", "", "", "o", "r"]
    CHANNEL.open("t7")
    assert HOOKS.attach("t7", DONE) and HOOKS.attach_record("t7", "o", "r")
    rider = CHANNEL.take("t7")
    assert rider is not None and rider.args() == [*DONE.args(), "o", "r"]
    assert not HOOKS.attach_record("t7", "o", "r")  # acknowledged already


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


def test_one_apps_guards_never_reach_another_apps_channels() -> None:
    other = BrokerHooks()
    theirs = other.for_channel()
    theirs.open("t8")
    assert not HOOKS.attach("t8", DONE)  # this app's hooks do not know that channel
    assert other.attach("t8", DONE) and theirs.take("t8") == Rider(DONE)


def test_a_channel_that_went_away_leaves_its_apps_hooks() -> None:
    hooks = BrokerHooks()
    channel = hooks.for_channel()
    channel.open("t9")
    del channel
    gc.collect()
    assert not hooks.attach("t9", DONE)
