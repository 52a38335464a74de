"""The one exception type a user can act on.

Library code raises :class:`UserError` for bad input (a value outside its allowed range, a missing
file, a malformed edit spec). Its message is one sentence that names the value and what is allowed.
The CLI prints it and exits with status 2, without a traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message names the value and what is allowed."""
