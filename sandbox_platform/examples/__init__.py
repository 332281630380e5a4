"""Example apps shipped with the package, runnable from a wheel install.

:mod:`sandbox_platform.examples.shop` is the default app in sandbox mode (``demo``, ``up``,
``worker`` and the seed facade without ``--app`` or ``SANDBOX_PLATFORM_APP``). Each example
uses the public surface only, as an application would.
"""
