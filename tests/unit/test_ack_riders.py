"""The per-process registry of completions that ride with acknowledgements."""

from __future__ import annotations

import os

from sandbox_platform.core import ack_riders
from sandbox_platform.core.ack_riders import Completion

DONE = Completion("sp:idem:r:{k}", 7, '{"ok": true}')


def test_a_completion_rides_only_with_a_tag_this_process_opened_and_has_not_acknowledged() -> None:
    assert not ack_riders.attach("never-opened", DONE)
    assert not ack_riders.attach(None, DONE)
    ack_riders.open_delivery("t1")
    assert ack_riders.attach("t1", DONE)
    assert ack_riders.take("t1") == DONE  # the acknowledgement carries it, and closes the tag
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
    assert ack_riders.forget_all() == [DONE]
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
