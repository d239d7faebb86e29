"""Which task failures Prefect retries: transient I/O only.

A retry helps when storage or the network hiccupped (an `OSError` such as a timeout, a reset connection, a
stale NFS handle) or a worker process died. It cannot help when the user's input is wrong — a missing
catalog or path, a view name taken by other thresholds, a profile or configuration key typo, a checkpoint of
the wrong kind — so those fail at once instead of costing two retries of waiting and a "Retry 1/2" in the log.
"""

from __future__ import annotations

# Subclasses of OSError that a retry cannot fix: the path is missing, is the wrong kind, or is not ours to read.
_PERMANENT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def is_user_error(exc: BaseException) -> bool:
    """The input itself is wrong (the library's typed input errors, a missing path, a bad value)."""
    from fada.checkpoint import CheckpointError
    from fada.config import ConfigError
    from fada.media import InputError
    from filters.profiles import ProfileError
    from shards.sources import ManifestError
    from shards.views import ViewError

    typed = (ViewError, ProfileError, ConfigError, CheckpointError, ManifestError, InputError)
    return isinstance(exc, typed + _PERMANENT_OS_ERRORS + (ValueError, TypeError, KeyError, LookupError))


def retry_transient(task, task_run, state) -> bool:
    """`retry_condition_fn` for tasks that read or write the data directory: retry unless the failure is a
    user error (`is_user_error`)."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return not is_user_error(exc)
    return True
