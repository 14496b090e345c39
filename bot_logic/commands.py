"""Words the bot takes as commands at any prompt, never as a name or an answer.

  * `help`: what the bot can do, then the question it was asking, again.
  * `menu` (`start over`, `restart`): back to the operations, stopping one that runs.
  * `cancel` (`stop`, `abort`): stop the running operation; with nothing running, said so.
  * Asking for a person ("agent", "talk to a human") is recognised by bot_logic.handoff.

Only a message that is the command alone counts: "stop notifications" or "help me count primes"
are not commands.
"""

from __future__ import annotations

import re

HELP, MENU, CANCEL = "help", "menu", "cancel"

_COMMANDS = {
    "help": HELP,
    "?": HELP,
    "what can you do": HELP,
    "menu": MENU,
    "main menu": MENU,
    "start over": MENU,
    "restart": MENU,
    "cancel": CANCEL,
    "stop": CANCEL,
    "abort": CANCEL,
}
_YES = {"yes", "y", "yeah", "yep", "sure", "ok", "okay", "yes please", "please do", "please"}
_NO = {"no", "n", "nope", "no thanks", "no thank you", "not now"}


def _normalised(text: str | None) -> str:
    if text is None:
        return ""
    stripped = text.strip()
    if stripped == "?":
        return stripped
    return " ".join(re.sub(r"[^\w\s]", " ", stripped.lower()).split())


def command_in(text: str | None) -> str | None:
    """HELP, MENU or CANCEL if the message is one of those commands, else None."""
    return _COMMANDS.get(_normalised(text))


def yes_or_no(text: str | None) -> bool | None:
    """True for a yes, False for a no, None for anything else."""
    answer = _normalised(text)
    if answer in _YES:
        return True
    if answer in _NO:
        return False
    return None
