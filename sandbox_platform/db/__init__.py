"""Database: models, one engine per process, sessions bound to the mode's database,
migrations, the batched recorder and the dead-letter store."""

from sandbox_platform.db.engine import dispose_engines, get_engine, session_scope
from sandbox_platform.db.models import (
    Alert,
    Base,
    DeadLetter,
    DryRunEvent,
    Effect,
    HeartbeatTick,
    JobRun,
)

__all__ = [
    "Alert",
    "Base",
    "DeadLetter",
    "DryRunEvent",
    "Effect",
    "HeartbeatTick",
    "JobRun",
    "dispose_engines",
    "get_engine",
    "session_scope",
]
