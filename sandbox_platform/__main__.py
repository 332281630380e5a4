"""``python -m sandbox_platform`` is the ``sandbox-platform`` command."""

from sandbox_platform.cli import main

main()
