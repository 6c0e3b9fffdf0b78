"""The one exception type the CLI turns into a single stderr line and exit code 2."""


class StylelabError(Exception):
    """A problem the user can fix (bad input, missing weights, unknown name).

    The message is one line and says what to do; the CLI prints it without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always a single line


class WeightsUnavailableError(StylelabError):
    """Pretrained weights could not be found in the cache nor downloaded."""


class NonFiniteLossError(StylelabError):
    """The loss became NaN or infinite during optimization."""
