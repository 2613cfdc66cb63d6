"""One ``--help`` style for every command: argparse's "(default: X)" only where it tells the reader something."""

from __future__ import annotations

import argparse
import re

# A help text that states its default itself: "(default 1024)", "default: the checkpoint folder's", "...; default
# ratio", "default GPU 0 when ...". Not "default = glibc's behaviour" (a choice named default) nor "the default ...".
_STATES_DEFAULT = re.compile(r"(^|[(;,:]\s*)default\b(?!\s*=)", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` without the noise it adds: no "(default: X)" after a help text that states
    its own default ("(default 1024)", "...; default: ...", usually in more words than the bare value), after a switch
    (``store_true``: "(default: False)"), or where the default is None or empty (the help says what happens then)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            _STATES_DEFAULT.search(text)
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default in ("", [], ())
        ):
            return text
        return super()._get_help_string(action)
