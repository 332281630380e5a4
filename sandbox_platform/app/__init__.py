"""The Celery layer: the app factory, the signal receivers, the per-process runtime that
assembles every lower part and hands it down, the guarded task and the built-in tasks."""
