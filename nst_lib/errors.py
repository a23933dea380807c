"""User-facing errors. The CLI prints their message as one line and exits non-zero, never a traceback."""


class NSTError(Exception):
    """Base class for errors caused by the user's input or environment, not by a bug."""

    exit_code = 2


class ConfigError(NSTError, ValueError):
    """An invalid StyleConfig value or an unknown preset/layer name."""


class ImageError(NSTError):
    """An input image that is missing, unreadable, corrupt or unusable. The message names the file."""


class WeightsNotFoundError(NSTError):
    """Pretrained weights that are neither in the Keras cache nor downloadable."""


class RunInUseError(NSTError):
    """A run folder another process is running (a second resume of it, a second sweep of the same cells)."""


class NonFiniteLossError(NSTError):
    """The loss became NaN or infinite; the last good image was kept."""

    exit_code = 3
