"""The one root of a user's errors, and the exit codes of every command.

A `UserError`'s message is the one paragraph the user reads: what was wrong and what is
allowed. Library code raises it (or a subclass); only the command-line wing
(`rasp_hydra/cli/`) turns it into the paragraph on stderr and the process's exit code.
This module imports nothing, so every layer may use it.

| code | meaning |
| --- | --- |
| 0 | done: the run completed (or was skipped), the sweep's jobs all completed |
| 1 | failed: a job raised, a write failed, a job was killed; a sweep with an incomplete job |
| 2 | refused: a bad config, value, file or command line, before any work |
| 3 | held: another live process writes the run directory |
| 130 | interrupted by SIGINT (Ctrl+C), after the run wrote its `interrupted` record |
| 143 | interrupted by SIGTERM, likewise |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_HELD = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UserError(Exception):
    """Something the user asked for that cannot be done; the message says what and why."""

    exit_code = EXIT_REFUSED


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message is meant for the user as it is."""


class BrokenFile(UserError):
    """A file of a run directory that cannot be read as what it should be; the message
    names the file and what is wrong with it. `reason` is the short form a table shows."""

    def __init__(self, message: str, name: str | None = None, what: str | None = None):
        super().__init__(message)
        self.name, self.what = name, what

    @property
    def reason(self) -> str:
        if self.name and self.what:
            return f"unreadable {self.name}: {self.what}"
        return str(self)


class HeldError(UserError):
    """Another live process holds the run directory."""

    exit_code = EXIT_HELD


class FailedError(UserError):
    """Work that started and could not finish (a failed write, a job that failed)."""

    exit_code = EXIT_FAILED


class Interrupted(UserError):
    """The user stopped the work (SIGINT or SIGTERM); the record says `interrupted`."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + signum
