"""The one allow-list of Celery's and kombu's private names the platform uses, by module.

Every module is in this package; ``tests/architecture/test_private_api.py`` reads the whole
package's source and fails on a private name used anywhere else or not listed here (and on a
listed name no longer used), and docs/architecture.md ("Private Celery and kombu API") lists the
same. pyproject.toml bounds Celery and kombu to the versions these names exist in
(:mod:`sandbox_platform.broker.versions`). A new use starts here, with the version range in
mind; the typed view of kombu's channel internals is
:class:`sandbox_platform.broker.kombu_api.RedisChannelInternals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["PRIVATE_API"]

PRIVATE_API: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "sandbox_platform.broker.hub": frozenset({"_conninfo", "_create_poller", "_ready"}),
        "sandbox_platform.broker.publisher": frozenset(
            {"_dump_pydantic_arguments", "_get_exec_options"}
        ),
        "sandbox_platform.broker.queues": frozenset({"_add"}),
        "sandbox_platform.broker.transport": frozenset(
            {
                "_after_fork",
                "_brpop_read",
                "_brpop_sent_at",
                "_brpop_start",
                "_create_client",
                "_deliver",
                "_disconnect_pools",
                "_expires",
                "_flush_brpop_reauth",
                "_get_message_priority",
                "_in_poll",
                "_put",
                "_q_for_pri",
                "_queue_cycle",
            }
        ),
    }
)
