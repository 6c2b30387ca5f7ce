"""The errors a user can cause: the apps print their message as one line."""


class UserError(ValueError):
    """A bad flag value, argument or input file; the message says what was expected.

    The message names the flag (`--xi=10: ...`), argument or file, so the
    apps print it as one line and exit with status 2.
    """


class DataError(UserError):
    """A data source is missing, unreachable or not in the expected format."""
