"""The one error type users can cause.

Anything a user can get wrong (a model name, a missing data file, a tampered artifact, a GPU that
is not there) raises :class:`VggbenchError` with a message that names the input and the fix. The
CLI prints it on one line and exits non-zero; bugs still raise normally with a traceback.
"""


class VggbenchError(Exception):
    """A problem with the user's input or machine, explained in one line."""
