"""The seed brief's API (``SandboxOrchestrator`` and friends), a thin facade over the real
parts. Its documented import path is :mod:`sandbox_platform.orchestrator`."""
