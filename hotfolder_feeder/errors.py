"""The exception tree. Callers act on the branch, so each branch is one kind of outcome."""


class FeederError(Exception):
    """Root of every error that hotfolder-feeder raises on purpose."""


class ConfigError(FeederError, ValueError):
    """Raised at start when the configuration is invalid. Fatal: the daemon exits with code 2."""


class PayloadError(FeederError, ValueError):
    """Raised when a pushed job is not a valid KornitX job.

    `path` is a JSON path such as `$.items[0].order_item.id`; `reason` says what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FetchError(FeederError):
    """Raised when an artwork download fails."""


class TransientFetchError(FetchError):
    """Raised for a failure that may pass: the download is retried with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFetchError(FetchError):
    """Raised for a failure that retrying will not fix: the delivery fails at once."""


class HotfolderUnavailable(FeederError, OSError):
    """Raised when a printer's hot folder cannot be reached: an outage of that printer."""
