"""Processes the platform starts and watches: supervised worker/beat commands and real
``celery worker``/``celery beat`` subprocesses stopped by their pid."""
