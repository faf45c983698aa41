"""The one door by which a command leaves: a user's error becomes one paragraph on stderr
and its exit code (the table in `rasp_hydra.errors`)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import NoReturn

from rasp_hydra.errors import EXIT_SIGINT, UserError


def paragraph(err: BaseException) -> str:
    """The message as one paragraph: "error: ..." with its whitespace folded."""
    return "error: " + " ".join(str(err).split())


def report(err: UserError) -> int:
    """Print `err`'s paragraph on stderr; its exit code."""
    print(paragraph(err), file=sys.stderr)
    return err.exit_code


def exit_code(main: Callable[[], int | None]) -> int:
    """Run `main`; a UserError is printed as its paragraph and answers its exit code.

    >>> from rasp_hydra.errors import HeldError
    >>> def held():
    ...     raise HeldError("another process holds   outputs/x")
    >>> exit_code(held)
    3
    """
    try:
        return main() or 0
    except UserError as err:
        return report(err)
    except KeyboardInterrupt:  # a Ctrl+C outside a run's own handler (e.g. while importing)
        return EXIT_SIGINT


def command(main: Callable[..., int | None]) -> Callable[..., int]:
    """`main(argv)` answering its exit code, a user's error printed as its paragraph."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        return exit_code(lambda: main(*args, **kwargs))

    return wrapper


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit` with `main`'s exit code: every `__main__` of the package ends here."""
    sys.exit(exit_code(main))


def exits(method: Callable) -> Callable:
    """For a Hydra callback or plugin method: Hydra turns an exception there into a warning
    (or wraps it), so a UserError leaves the process at once, as `run_command` would."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except UserError as err:
            sys.exit(report(err))

    return wrapper
