"""The one exception tree of sandbox-platform.

Every error the platform raises on purpose derives from :class:`PlatformError`::

    PlatformError
    ├── SettingsError            a setting is missing, malformed or contradicts another
    │   ├── IsolationError       sandbox and live would share a database
    │   └── ExtraMissing         what the settings or a command need is an extra not installed
    ├── EnqueueError             a job was refused at the call site; nothing was published
    │   ├── PayloadError         arguments are not JSON-serialisable or are too large
    │   ├── UnknownTaskError     no task of that name is registered
    │   ├── CountdownTooLongError  a countdown/ETA beyond the broker's visibility timeout
    │   └── InvalidDelayError    a countdown/ETA that is not a number / a time
    ├── GuardError               a guard refused to run a job
    │   ├── ModeMismatchError    a message of the other mode reached this worker
    │   ├── GovernorUnavailable  the governor's Redis cannot be reached (fail closed)
    │   ├── RateLimitedError     the governor denied the job (carries the wait time)
    │   ├── IdempotencyConflict  the same key was used with different arguments
    │   └── IdempotencyInFlight  the key is being run by someone else right now
    ├── DryRunError              an irreversible action was declared or simulated wrongly
    │   └── SimulationError      a simulator raised (a bug of the simulator, never retried)
    ├── SandboxEgressBlocked     task code in sandbox mode tried to reach an address not
    │                            on the allow-list
    └── RetryExhausted           the retry policy gave up (carries the last error)

Only these types cross the platform's public API; anything unexpected raised inside a guard
hook is logged and wrapped, never swallowed.
"""

from __future__ import annotations

__all__ = [
    "CoordinationRecordError",
    "CountdownTooLongError",
    "DryRunError",
    "EnqueueError",
    "ExtraMissing",
    "GovernorUnavailable",
    "GuardError",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "InvalidDelayError",
    "IsolationError",
    "ModeMismatchError",
    "PayloadError",
    "PlatformError",
    "RateLimitedError",
    "ResultNotStored",
    "RetryExhausted",
    "SandboxEgressBlocked",
    "SettingsError",
    "SimulationError",
    "UnknownTaskError",
]


class PlatformError(Exception):
    """Root of every error sandbox-platform raises on purpose."""


class SettingsError(PlatformError):
    """A setting is missing, malformed or contradicts another.

    ``setting`` is the environment variable's name, so the message can be one line.
    """

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class IsolationError(SettingsError):
    """Sandbox and live would share one database: the platform refuses to start."""


class ExtraMissing(SettingsError):
    """What a setting or a command asks for needs an extra that is not installed.

    One line naming the extra and how to install it: ``the dashboard needs the [dashboard]
    extra: pip install 'sandbox-platform[dashboard]'``, after the variable when a setting
    asked for it (``setting`` is then its name, else empty).
    """

    def __init__(
        self, extra: str, feature: str, setting: str | None = None, otherwise: str = ""
    ) -> None:
        self.extra = extra
        self.setting = setting or ""
        self.problem = (
            f"{feature} needs the [{extra}] extra: pip install 'sandbox-platform[{extra}]'"
            + (f" {otherwise}" if otherwise else "")
        )
        PlatformError.__init__(self, f"{setting}: {self.problem}" if setting else self.problem)


class EnqueueError(PlatformError):
    """A job was refused at the call site; nothing was published."""


class PayloadError(EnqueueError):
    """Task arguments are not JSON-serialisable or exceed the size limit."""


class UnknownTaskError(EnqueueError):
    """No task is registered under that name."""


class CountdownTooLongError(EnqueueError):
    """A countdown or ETA is longer than the broker's visibility timeout."""


class InvalidDelayError(EnqueueError):
    """A countdown that is not a finite number of seconds, or an ETA that is not a time."""


class GuardError(PlatformError):
    """A guard refused to run a job."""


class ModeMismatchError(GuardError):
    """A message enqueued in one mode reached a worker of the other mode."""


class GovernorUnavailable(GuardError):
    """The governor's Redis could not be reached; irreversible work fails closed."""


class CoordinationRecordError(GuardError):
    """An idempotency record or governor key of the job holds another Redis type (an operator
    or a key clash wrote it): the job is dead-lettered naming its keys, which are left as they
    are; the other jobs go on."""


class RateLimitedError(GuardError):
    """The governor denied the job; ``wait_seconds`` says when a token is due."""

    def __init__(self, resource: str, wait_seconds: float) -> None:
        self.resource = resource
        self.wait_seconds = wait_seconds
        super().__init__(f"rate limited on {resource!r}: retry in {wait_seconds:.3f}s")


class IdempotencyConflict(GuardError):
    """The same idempotency key was used with different arguments."""


class IdempotencyInFlight(GuardError):
    """The idempotency key is being executed elsewhere right now."""


class DryRunError(PlatformError):
    """An irreversible action was declared or simulated wrongly."""


class SimulationError(DryRunError):
    """A simulator raised: names the action, the function and the original error.

    The intercepted call is still recorded (with the error); the job is dead-lettered
    ``simulation_failed`` at once, since retrying cannot fix a simulator.
    """

    dead_letter_reason = "simulation_failed"

    def __init__(self, action: str, function: str, error: BaseException) -> None:
        self.action = action
        self.function = function
        self.error = error
        super().__init__(
            f"the simulator of irreversible action {action!r} ({function}) raised {error!r}"
        )


class SandboxEgressBlocked(PlatformError):
    """Task code in sandbox mode tried to connect to ``destination``, which is not on the
    egress allow-list (``SANDBOX_PLATFORM_EGRESS_ALLOW``). Never retried."""

    dead_letter_reason = "egress_blocked"

    def __init__(self, destination: str, how: str = "connect") -> None:
        self.destination = destination
        self.how = how
        super().__init__(
            f"sandbox egress guard blocked {how} to {destination}: not on the allow-list "
            "(SANDBOX_PLATFORM_EGRESS_ALLOW)"
        )


class RetryExhausted(PlatformError):
    """The retry policy gave up; ``last_error`` is what the final attempt raised."""

    def __init__(self, name: str, attempts: int, last_error: BaseException) -> None:
        self.name = name
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"{name}: gave up after {attempts} attempts: {last_error!r}")


class ResultNotStored(PlatformError):
    """A job ran, but its idempotency record could not take its result (the key holds
    another type: an operator or a key clash wrote it). The run is recorded failed; the record
    is left as it is."""
