"""The platform's Redis transport for kombu: a subclass of kombu's, installed by
``create_app`` for ``redis://`` and ``rediss://`` brokers (``broker_transport``; no new URL
scheme). Publishing is kombu's; consuming is leaner and safer.

**Fetch.** kombu takes a message with ``BRPOP`` and then records it as unacknowledged with a
second command (a ``MULTI``/``EXEC`` pipeline); if Redis dies between the two, that message
is gone. Here one Lua call (``broker/lua/fetch.lua``) takes the message *and* records it, and
carries the consumer's pending acknowledgements along: when busy, a job costs one round trip
to the broker where kombu needs three (pop, record, acknowledge). When a fetch finds nothing,
the consumer waits with ``BLMOVE <queue> <queue> RIGHT RIGHT <timeout>`` — a blocking wait
that leaves the list as it was — on its first queue, then fetches again (at least every
``brpop_timeout``, 1 s: a message on another queue or a priority sub-queue of an idle worker
waits up to that long).

**Acknowledgements.** An acknowledgement made while no command is in flight on the consumer's
connection (the solo pool: the job ran inside the delivery) is buffered and sent with the
next fetch, which follows at once; one made while the consumer waits (prefork: a child
finished) is sent at once (``broker/lua/ack.lua``). Buffered ones are sent before the channel
closes or restores its unacknowledged messages. The guarantees are kombu's: at least once,
redelivery after the visibility timeout, restore of a dead worker's messages.

**Riders.** When the coordination keys live in the broker's database, a message this
process delivers carries its tag in ``DELIVERY_HEADER``, and a job that ends here attaches its
run record (and, idempotent and succeeded, its result) to that tag, through its app's hooks
(:mod:`sandbox_platform.broker.hooks`, given to every channel in the transport option
``sandbox_platform_hooks``; each channel keeps its own deliveries); the result is stored and
the record pushed onto the run-record outbox (:mod:`sandbox_platform.db.outbox`) by the same
script that acknowledges the job (fetch or ack), before the acknowledgement. A prefork child,
whose parent acknowledges, stores them with its own calls. Each completion is isolated in the
script: one whose record holds another Redis type fails alone (its status says so, the job's
run record is pushed ``failed``) and the script goes on.

**Bad elements.** An element of a queue's list that is not a kombu message (raw bytes, not
JSON) is moved by the script to ``<queue>.malformed`` and handed to the worker's handler (a
dead letter, reason ``undecodable``), then removed from that list; the consumer goes on.

It falls back to kombu's behaviour (with the bad-element handling) when the server is older
than Redis 6.2 (no ``BLMOVE``), with a global key prefix, or with the transport option
``sandbox_platform_lean=False``. One sync client is kept per channel for the bookkeeping
instead of a new ``redis.Redis`` per command.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from queue import Empty
from time import monotonic
from typing import Any

import redis
import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from sandbox_platform.broker.ack_riders import Deliveries, Rider
from sandbox_platform.broker.fetch_reply import (
    MalformedHandler,
    hand_over_malformed,
    set_delivery_headers,
    set_malformed_handler,
    settle_riders,
)
from sandbox_platform.broker.hooks import HOOKS_OPTION, BrokerHooks
from sandbox_platform.broker.kombu_api import internals
from sandbox_platform.broker.lua import TRANSPORT_SCRIPTS
from sandbox_platform.broker.publish_once import PUBLISH_ONCE_HEADER, PublishAnswer

__all__ = [
    "ADMIT_OPTION",
    "HOOKS_OPTION",
    "LEAN_OPTION",
    "Channel",
    "MalformedHandler",
    "QoS",
    "Transport",
    "set_malformed_handler",
]

log = structlog.get_logger(__name__)

#: transport option: False keeps kombu's BRPOP consumer (for comparison)
LEAN_OPTION = "sandbox_platform_lean"
#: transport option: the platform's key prefix when its coordination keys live in the
#: broker's Redis database (then the fetch admits jobs too); absent or "": it does not
ADMIT_OPTION = "sandbox_platform_admit_prefix"

_FETCH, _WAIT = "FETCH", "WAIT"
#: values per element in the fetch script's reply
_FIELDS = 8


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS; a delivery the fetch script recorded is not recorded again, and an
    acknowledgement rides with the next fetch when it can."""

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.take_recorded(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self.channel.acknowledge(delivery_tag, self.channel.deliveries.take(delivery_tag))
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        self.channel.add_riders(self.channel.deliveries.forget_all())
        self.channel.flush_acks()
        super().restore_unacked(client)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel.add_riders([self.channel.deliveries.take(delivery_tag)])
        self.channel.flush_acks()
        super().reject(delivery_tag, requeue)


class Channel(kombu_redis.Channel):
    QoS = QoS
    from_transport_options = (
        *kombu_redis.Channel.from_transport_options,
        LEAN_OPTION,
        ADMIT_OPTION,
        HOOKS_OPTION,
    )
    sandbox_platform_lean: bool = True
    sandbox_platform_admit_prefix: str = ""
    #: the app's side of the hand-over (broker/hooks.py); None: nothing rides, no answers
    sandbox_platform_hooks: BrokerHooks | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._acks: list[str] = []
        self._acks_lock = threading.Lock()
        self._sent_acks: list[str] = []
        #: what rides with the buffered acknowledgements (broker/ack_riders.py)
        self._riders: list[Rider] = []
        self._sent_riders: list[Rider] = []
        self._recorded: set[str] = set()
        self._command: str | None = None
        self._wait_next = False
        self._lean: bool | None = None
        self._fetch_queues: list[str] = []
        self._sync: redis.Redis | None = None
        super().__init__(*args, **kwargs)
        hooks = self.sandbox_platform_hooks
        #: the deliveries this channel handed over, with what rides with them
        self.deliveries = hooks.for_channel() if hooks is not None else Deliveries()

    # -- one sync client for the bookkeeping ---------------------------------------------

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._sync is None:
            chan = internals(self)
            self._sync = chan._create_client()
        yield self._sync

    def _after_fork(self) -> None:
        self._sync = None
        super()._after_fork()  # type: ignore[misc]

    def _disconnect_pools(self) -> None:
        self._sync = None
        super()._disconnect_pools()  # type: ignore[misc]

    # -- lean consuming ------------------------------------------------------------------

    def _lean_ok(self) -> bool:
        if self._lean is None:
            self._lean = self._decide_lean()
        return self._lean

    def _decide_lean(self) -> bool:
        chan = internals(self)
        if not self.sandbox_platform_lean or chan.global_keyprefix:
            return False
        try:
            with self.conn_or_acquire() as client:
                version = str(client.info("server").get("redis_version", "0"))
        except redis.RedisError:
            return False
        major, minor = (int(part) for part in [*version.split("."), "0"][:2])
        return (major, minor) >= (6, 2)

    def _brpop_start(self, timeout: float | None = None) -> None:
        chan = internals(self)
        if not self._lean_ok():
            kombu_redis.Channel._brpop_start(chan, timeout)  # type: ignore[attr-defined]
            return
        queues = chan._queue_cycle.consume(len(chan.active_queues))
        if not queues:
            return
        if timeout is None:
            timeout = chan.brpop_timeout
        connection = chan.client.connection
        chan._in_poll = connection
        chan._brpop_sent_at = monotonic()
        with self._acks_lock:
            waiting = self._wait_next and not self._acks and not self._riders
        if waiting:
            self._command = _WAIT
            key = chan._q_for_pri(queues[0], 0)
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", timeout or 0)
            return
        self._command = _FETCH
        connection.send_command(*self._fetch_command(queues))

    def _fetch_command(self, queues: Sequence[str]) -> list[Any]:
        chan = internals(self)
        steps = chan.priority_steps
        self._fetch_queues = [queue for _pri in steps for queue in queues]
        keys = [chan._q_for_pri(queue, pri) for pri in steps for queue in queues]
        with self._acks_lock:
            acks, self._acks = self._acks, []
            riders, self._riders = self._riders, []
        self._sent_acks, self._sent_riders = acks, riders
        wanted = max(1, int(chan.qos.can_consume_max_estimate() or 1))
        sha = TRANSPORT_SCRIPTS.sha(self._script_client(), "fetch")
        malformed = [f"{queue}.malformed" for queue in self._fetch_queues]
        return [
            "EVALSHA",
            sha,
            2 + len(keys),
            chan.unacked_key,
            chan.unacked_index_key,
            *keys,
            wanted,
            self.sandbox_platform_admit_prefix or "",
            len(acks),
            *acks,
            len(riders),
            *(arg for rider in riders for arg in rider.args()),
            *malformed,
        ]

    def _script_client(self) -> redis.Redis:
        with self.conn_or_acquire() as client:
            return client  # type: ignore[no-any-return]

    def _brpop_read(self, **options: Any) -> bool:
        if not self._lean_ok():
            return self._stock_read(**options)
        chan = internals(self)
        command, self._command = self._command, None
        try:
            try:
                reply = chan.client.parse_response(
                    chan.client.connection, command or "EVALSHA", **options
                )
            except redis.exceptions.NoScriptError:
                self._requeue_sent_acks()
                TRANSPORT_SCRIPTS.forget(self._script_client())
                raise Empty() from None
            except chan.connection_errors:
                self._requeue_sent_acks()
                chan.client.connection.disconnect()
                raise
        finally:
            chan._in_poll = None
            flush = getattr(chan, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()
        if command == _WAIT:
            self._wait_next = False
            raise Empty()
        riders, self._sent_acks, self._sent_riders = self._sent_riders, [], []
        elements = settle_riders(riders, reply, 1)
        if len(reply) <= elements:
            self._wait_next = True
            raise Empty()
        self._wait_next = False
        self._deliver_fetched(reply, elements)
        return True

    def _deliver_fetched(self, reply: list[Any], first: int) -> None:
        chan = internals(self)
        last = None
        # records on the broker's node, and an app whose guards can reach this channel
        rides = bool(self.sandbox_platform_admit_prefix) and self.sandbox_platform_hooks is not None
        for i in range(first, len(reply), _FIELDS):
            kind, index, item = int(reply[i]), int(reply[i + 1]), reply[i + 2]
            queue = self._fetch_queues[index - 1]
            last = queue
            if kind == 0:
                self._on_malformed(queue, item, ValueError("not a kombu message"), kept=True)
                continue
            payload = loads(bytes_to_str(item))
            tag = payload["properties"]["delivery_tag"]
            set_delivery_headers(payload, reply[i + 3 : i + _FIELDS], tag if rides else None)
            self._recorded.add(tag)
            if rides:
                self.deliveries.open(tag)
            chan.connection._deliver(payload, queue)
        if last is not None:
            chan._queue_cycle.rotate(last)

    def take_recorded(self, delivery_tag: str) -> bool:
        """True (once) when the fetch script recorded ``delivery_tag`` as unacknowledged."""
        try:
            self._recorded.remove(delivery_tag)
        except KeyError:
            return False
        return True

    # -- acknowledgements ----------------------------------------------------------------

    def acknowledge(self, delivery_tag: str, rider: Rider | None = None) -> None:
        """Buffer the acknowledgement (and what rides with it) for the next fetch, or send it
        now (see the module)."""
        chan = internals(self)
        riders = [rider] if rider is not None else []
        if self._lean and (not chan._in_poll or self._command == _FETCH):
            with self._acks_lock:
                self._acks.append(delivery_tag)
                self._riders += riders
            return
        self._send_acks([delivery_tag], riders)

    def add_riders(self, riders: Sequence[Rider | None]) -> None:
        """Riders to send with the next acknowledgements (or flush)."""
        with self._acks_lock:
            self._riders += [rider for rider in riders if rider is not None]

    def flush_acks(self) -> None:
        """Send every buffered acknowledgement (and completion) now."""
        with self._acks_lock:
            acks, self._acks = self._acks, []
            riders, self._riders = self._riders, []
        if acks or riders:
            self._send_acks(acks, riders)

    def _send_acks(self, tags: list[str], riders: list[Rider]) -> None:
        chan = internals(self)
        client = self._script_client()
        reply = TRANSPORT_SCRIPTS.get(client, "ack")(
            keys=[chan.unacked_key, chan.unacked_index_key],
            args=[len(riders), *(arg for rider in riders for arg in rider.args()), *tags],
        )
        settle_riders(riders, reply, 1)

    def _requeue_sent_acks(self) -> None:
        """A fetch failed: its acknowledgements (and completions) may not have been applied;
        keep them for the next one."""
        sent, self._sent_acks = self._sent_acks, []
        riders, self._sent_riders = self._sent_riders, []
        if sent or riders:
            with self._acks_lock:
                self._acks[:0] = sent
                self._riders[:0] = riders

    def basic_cancel(self, consumer_tag: str) -> Any:
        self.flush_acks()
        return super().basic_cancel(consumer_tag)

    def close(self) -> None:
        try:
            self.flush_acks()
        except Exception:
            log.warning("buffered acknowledgements not sent at close; redelivered later")
        super().close()

    # -- publishing: the enqueue-side dedupe folded in -----------------------------------

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """kombu's ``_put``; a message with ``PUBLISH_ONCE_HEADER`` is pushed only if its
        idempotency key was free, in one script (:mod:`sandbox_platform.broker.publish_once`)."""
        chan = internals(self)
        headers = message.get("headers")
        once = headers.pop(PUBLISH_ONCE_HEADER, None) if isinstance(headers, dict) else None
        if once is None:
            super()._put(queue, message, **kwargs)
            return
        task_id = str(headers.get("id")) if isinstance(headers, dict) else ""
        key, value, ttl, *rest = once
        answer = rest[0] if rest and isinstance(rest[0], PublishAnswer) else None
        if kwargs.get("_publish_batch") is not None or (chan._expires and queue in chan._expires):
            # kombu's own push (a batch, or a queue that expires): the script only marks
            held = self._publish_once(key, "", value, ttl, "")
            if not held or held.partition(" ")[0] == task_id:  # free, or this job again
                super()._put(queue, message, **kwargs)
                held = ""
        else:
            target = chan._q_for_pri(queue, chan._get_message_priority(message, reverse=False))
            held = self._publish_once(key, target, value, ttl, dumps(message))
        if answer is not None:
            answer.held = held

    def _publish_once(self, key: str, target: str, value: str, ttl: int, message: str) -> str:
        """``publish_once.lua``: mark ``key`` for this job and push ``message`` onto ``target``
        (``message`` "": mark only); what the record held ("" = marked now)."""
        with self.conn_or_acquire() as client:
            sha = TRANSPORT_SCRIPTS.sha(client, "publish_once")
            args = (2, key, target or key, value, ttl, message)
            try:
                held = client.evalsha(sha, *args)
            except redis.exceptions.NoScriptError:
                TRANSPORT_SCRIPTS.forget(client)
                held = client.evalsha(TRANSPORT_SCRIPTS.sha(client, "publish_once"), *args)
        return bytes_to_str(held)

    # -- kombu's BRPOP consumer, with bad elements dead-lettered -------------------------

    def _stock_read(self, **options: Any) -> bool:
        chan = internals(self)
        try:
            try:
                dest__item = chan.client.parse_response(chan.client.connection, "BRPOP", **options)
            except chan.connection_errors:
                chan.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(chan.sep, 1)[0]
            chan._queue_cycle.rotate(dest)
            try:
                payload = loads(bytes_to_str(item))
            except (ValueError, TypeError) as exc:
                self._on_malformed(dest, item, exc, kept=False)
                return True
            set_delivery_headers(payload, None)
            chan.connection._deliver(payload, dest)
            return True
        finally:
            chan._in_poll = None
            flush = getattr(chan, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _on_malformed(self, queue: str, raw: Any, error: BaseException, *, kept: bool) -> None:
        with self.conn_or_acquire() as client:
            hand_over_malformed(internals(self).connection, client, queue, raw, error, kept=kept)


class Transport(kombu_redis.Transport):
    Channel = Channel
    #: the consumer's handler of undecodable elements (:func:`set_malformed_handler`)
    sp_malformed_handler: MalformedHandler | None = None
