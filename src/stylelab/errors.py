"""The one exception type the CLI turns into a single stderr line and exit code 2."""

from __future__ import annotations

import re
from collections.abc import Mapping


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


# Library messages name the parameter a value came from as a Python caller writes it: "weights=x.pth",
# "lower style_weight=". Front ends rewrite those references into their own words (CLI flags, page controls).
_PARAMETER = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*)=(\S?)")


def translate_parameters(message: str, names: Mapping[str, str]) -> str:
    """``name=`` references -> ``names[name]`` (e.g. "--lpips-weights"), followed by a space before a value;
    names not in ``names`` stay as they are."""

    def rewrite(match: re.Match) -> str:
        name, following = match.group(1), match.group(2)
        if name not in names:
            return match.group(0)
        return f"{names[name]} {following}" if following and following not in ",;:)" else names[name] + following

    return _PARAMETER.sub(rewrite, message)


def renamed_parameter(exc: StylelabError, old: str, new: str) -> StylelabError:
    """The same error (same type) with ``old=`` references written ``new=``: a loader called on behalf of
    another parameter (the judge's weights are ``judge_weights``, not ``weights``)."""
    return type(exc)(re.sub(rf"(?<![\w.-]){re.escape(old)}=", f"{new}=", str(exc)))
