"""The built-in guards, one module each, and the ordered list every platform app runs.

Adding a guard: write its module (a :class:`~sandbox_platform.guards.base.Guard` subclass),
its test, and one line in :data:`BUILTIN_GUARDS`; or, from an application, pass it to
``create_app(guards=[...])``, where the names it runs ``before``/``after`` place it among these
(:mod:`sandbox_platform.guards.ordering`).
"""

from sandbox_platform.guards.base import Guard
from sandbox_platform.guards.builtin.arguments import ArgumentsGuard
from sandbox_platform.guards.builtin.countdown import CountdownGuard
from sandbox_platform.guards.builtin.governor import GovernorGuard
from sandbox_platform.guards.builtin.idempotency import IdempotencyGuard
from sandbox_platform.guards.builtin.mode import ModeGuard
from sandbox_platform.guards.builtin.payload import PayloadGuard
from sandbox_platform.guards.builtin.poison import PoisonGuard
from sandbox_platform.guards.builtin.retry import RetryGuard
from sandbox_platform.guards.builtin.secrets import SecretsGuard
from sandbox_platform.guards.builtin.time_limit import TimeLimitGuard

__all__ = [
    "BUILTIN_GUARDS",
    "ArgumentsGuard",
    "CountdownGuard",
    "GovernorGuard",
    "IdempotencyGuard",
    "ModeGuard",
    "PayloadGuard",
    "PoisonGuard",
    "RetryGuard",
    "SecretsGuard",
    "TimeLimitGuard",
]

#: In the order they run (forward hooks; the reverse hooks run from the end).
BUILTIN_GUARDS: tuple[Guard, ...] = (
    TimeLimitGuard(),
    ModeGuard(),
    PoisonGuard(),
    ArgumentsGuard(),
    SecretsGuard(),
    PayloadGuard(),
    CountdownGuard(),
    IdempotencyGuard(),
    GovernorGuard(),
    RetryGuard(),
)
