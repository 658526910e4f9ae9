"""The error every layer raises for bad input, and a helper for one-line messages."""


class UsageError(Exception):
    """Bad input (an unusable file, directory, option or value): the CLIs print it as one line, exit status 2."""


class ConfigError(UsageError, ValueError):
    """A configuration that cannot be used: unknown algorithm, unknown key, malformed value."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
