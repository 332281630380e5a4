"""Each app has its own broker hooks (broker/hooks.py), made on first use: by the factory for
an app whose transport rides (Redis broker, coordination keys on it), else when its runtime is
built (a RabbitMQ app). Regression: building the runtime of an app whose hooks did not exist
yet deadlocked (both took the runtime registry's lock); it hung the first enqueue of a
RabbitMQ app."""

from __future__ import annotations

import threading

from kombu.utils import json

from sandbox_platform import create_app, load_settings
from sandbox_platform.app.runtime import broker_hooks, runtime_for
from sandbox_platform.broker.hooks import HOOKS_OPTION
from tests.brokers import AMQP_SERVER


def _built_within(app, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    done = threading.Event()
    threading.Thread(target=lambda: (runtime_for(app), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_a_rabbitmq_app_gets_its_hooks_when_its_runtime_is_built(
    platform_settings_kwargs,
) -> None:
    app = create_app(load_settings(**platform_settings_kwargs, broker_url=AMQP_SERVER))
    try:
        assert HOOKS_OPTION not in (app.conf.broker_transport_options or {})
        assert _built_within(app, 30), "building the runtime hung"
        assert runtime_for(app).pipeline.services.broker is broker_hooks(app)
    finally:
        app.close()


def test_two_apps_have_two_hooks_and_the_transport_gets_its_apps(platform_app, redis_url) -> None:
    other = create_app(load_settings(redis_url=redis_url))
    try:
        mine = platform_app.conf.broker_transport_options[HOOKS_OPTION]
        assert (
            mine is broker_hooks(platform_app) is runtime_for(platform_app).pipeline.services.broker
        )
        assert broker_hooks(other) is not mine
    finally:
        other.close()


def test_the_hooks_in_the_transport_options_go_into_a_json_reply(platform_app) -> None:
    """A worker's ``inspect stats`` reply carries its connection's transport options: kombu's
    JSON must take the hooks (it did not: no worker answered ``stats``)."""
    options = platform_app.conf.broker_transport_options
    assert "BrokerHooks" in json.dumps(options)
