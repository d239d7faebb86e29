"""What every ``fada`` subcommand shares: its parser class, the user-error rule (one line on stderr, exit 2) and
``--wait``."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


class UserError(Exception):
    """A mistake in what the user asked (arguments, files); `run_command` prints it as one line and exits 2."""


class CommandParser(argparse.ArgumentParser):
    """``fada``'s parsers: a refused command line raises `UserError` (one line and exit 2 like every user error,
    not the usage text), and a subcommand can add (some of) its options when it is used (`add_options_later`)."""

    _add_later: Callable[[argparse.ArgumentParser], None] | None = None

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")

    def add_options_later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._add_later = add

    def parse_known_args(self, args=None, namespace=None):
        if self._add_later is not None:
            add, self._add_later = self._add_later, None
            add(self)
        return super().parse_known_args(args, namespace)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that report a user's mistake or a data dir state the user must act on: exit 2, one line.
    Imported when an error happens, so a command loads only the libraries it runs."""
    from filters.config_fields import ConfigError
    from filters.profiles import ProfileError
    from shards.ingest.config import IngestInputError
    from shards.datadir import DamagedFile
    from shards.lock import LockHeld
    from shards.rescore import RescoreError
    from shards.sources import InputFileError
    from shards.views import ViewError

    return UserError, ConfigError, ProfileError, IngestInputError, DamagedFile, LockHeld, InputFileError, ViewError, RescoreError


# What a model command reports as the user's mistake (one line, exit 2): its configuration, checkpoints, weights
# and input files are checked as it starts (ValueError: CheckpointError, ConfigError, InputError …;
# FileNotFoundError: MissingWeightsError, a missing checkpoint or view …).
MODEL_USER_ERRORS = (ValueError, FileNotFoundError)


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                also: tuple[type[BaseException], ...] = ()) -> int:
    """``command(args)``; a user error (`user_error_types`, or one of ``also``: the command's own, e.g. ValueError
    for a model command, whose configuration and checkpoints are checked as it starts) is printed as one line
    ``error: …`` and returns 2."""
    try:
        return command(args)
    except Exception as exc:
        if not isinstance(exc, (*user_error_types(), *also)):
            raise
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2


def add_wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another writer of the data dir to finish (default: exit 2 at once)")
