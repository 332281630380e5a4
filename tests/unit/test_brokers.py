"""Choosing the broker by its URL: Redis (default) or RabbitMQ; anything else is one line.
The coordination Redis stays Redis whatever the broker is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox_platform.broker.celery_config import celery_config
from sandbox_platform.core.broker_kind import BrokerKind, broker_kind
from sandbox_platform.core.errors import CountdownTooLongError, SettingsError
from sandbox_platform.core.redis_client import celery_url
from sandbox_platform.core.settings import load_settings
from sandbox_platform.guards.retry import check_countdown
from tests.helpers import platform_env

REDIS = "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/1", BrokerKind.REDIS),
        ("rediss://h:6380/0", BrokerKind.REDIS),
        ("unix:///tmp/redis.sock", BrokerKind.REDIS),
        ("amqp://guest:guest@127.0.0.1:5672//", BrokerKind.RABBITMQ),
        ("amqp://guest:guest@127.0.0.1:5672/vhost", BrokerKind.RABBITMQ),
        ("amqps://u:p@rabbit.example:5671/prod", BrokerKind.RABBITMQ),
        ("pyamqp://guest@localhost//", BrokerKind.RABBITMQ),
    ],
)
def test_redis_and_rabbitmq_broker_urls_are_accepted(url: str, kind: BrokerKind) -> None:
    settings = load_settings(redis_url=REDIS, broker_url=url)
    assert settings.broker_kind is kind is broker_kind(url)
    assert settings.redis_url == REDIS  # coordination stays on Redis
    assert celery_config(settings)["broker_url"] == celery_url(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://127.0.0.1:9092", "unsupported broker URL ('kafka'"),
        ("sqs://key:secret@", "unsupported broker URL ('sqs'"),
        ("127.0.0.1:5672", "unsupported broker URL (no scheme"),
        ("amqp://", "unsupported broker URL"),
        ("amqp://guest:hunter2@127.0.0.1:99999/v", "malformed RabbitMQ URL: the port"),
        ("amqp://guest:hunter2@:5672/v", "malformed RabbitMQ URL: no host"),
        ("redis://127.0.0.1:6379/x", "malformed Redis URL: the database 'x'"),
    ],
)
def test_other_broker_urls_are_one_clear_line(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(redis_url=REDIS, broker_url=url)
    message = str(info.value)
    assert info.value.setting == "SANDBOX_PLATFORM_BROKER_URL"
    assert says in message and "\n" not in message
    assert "hunter2" not in message and "secret" not in message


def test_an_amqp_url_is_still_not_a_coordination_redis() -> None:
    with pytest.raises(SettingsError, match=r"SANDBOX_PLATFORM_REDIS_URL.*malformed Redis URL"):
        load_settings(redis_url="amqp://guest:guest@127.0.0.1:5672//")


def test_redelivery_timeout_is_the_brokers_own() -> None:
    on_redis = load_settings(redis_url=REDIS, visibility_timeout=900, consumer_timeout=600)
    assert on_redis.redelivery_timeout == 900
    assert on_redis.redelivery_timeout_name == "visibility timeout"
    on_rabbit = load_settings(
        redis_url=REDIS, broker_url="amqp://127.0.0.1//", visibility_timeout=900
    )
    assert on_rabbit.redelivery_timeout == 1800  # RabbitMQ's default consumer_timeout
    assert "consumer timeout" in on_rabbit.redelivery_timeout_name


def test_rabbitmq_gets_no_redis_transport_options() -> None:
    settings = load_settings(
        redis_url=REDIS, broker_url="amqp://127.0.0.1//", result_backend="redis"
    )
    conf = celery_config(settings)
    assert conf["broker_transport_options"] == {}  # no visibility timeout, no confirms
    assert conf["result_backend"] == REDIS  # "redis" still means the coordination Redis
    assert conf["sandbox_platform_redis_url"] == REDIS
    assert "visibility_timeout" in conf["result_backend_transport_options"]


def test_countdown_refusal_names_the_consumer_timeout() -> None:
    with pytest.raises(CountdownTooLongError, match="consumer timeout of 1800s") as info:
        check_countdown(1800, 1800, "RabbitMQ consumer timeout", "CONSUMER_TIMEOUT")
    assert "raise CONSUMER_TIMEOUT" in str(info.value)


def test_settings_command_shows_the_rabbitmq_broker_masked(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "settings", "--json"],
        env=platform_env(
            data_dir=tmp_path,
            redis_url=REDIS,
            broker_url="amqp://ops:brokerpass@127.0.0.1:5672/prod",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["broker_url_in_use"] == "amqp://ops:***@127.0.0.1:5672/prod"
    assert "brokerpass" not in proc.stdout


def test_a_bad_broker_url_stops_the_cli_with_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "settings"],
        env=platform_env(data_dir=tmp_path, redis_url=REDIS, broker_url="kafka://127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SANDBOX_PLATFORM_BROKER_URL" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
