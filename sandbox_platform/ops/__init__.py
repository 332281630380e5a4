"""Operations: alerts and what feeds them, the beat heartbeat, the leader lease, the staleness
watchdog, GO/NO-GO readiness, status, default limits and dead-letter replay."""
