"""The words the bot takes as commands at any prompt, and the answers to "Shall I bring in a person?"."""

from __future__ import annotations

import pytest

from bot_logic.commands import CANCEL, HELP, MENU, command_in, yes_or_no


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("help", HELP),
        ("Help!", HELP),
        ("  HELP  ", HELP),
        ("?", HELP),
        ("what can you do?", HELP),
        ("menu", MENU),
        ("Main menu", MENU),
        ("start over", MENU),
        ("restart.", MENU),
        ("cancel", CANCEL),
        ("Stop", CANCEL),
        ("abort!", CANCEL),
    ],
)
def test_a_command_alone_is_recognised(text: str, command: str) -> None:
    assert command_in(text) == command


@pytest.mark.parametrize(
    "text",
    [None, "", "Ada", "stop notifications", "help me count primes", "cancel my order please", "menus", "??"],
)
def test_anything_else_is_no_command(text: str | None) -> None:
    assert command_in(text) is None


@pytest.mark.parametrize("text", ["yes", "Y", "yeah", "Sure!", "ok", "Okay.", "yes please", "please"])
def test_yes(text: str) -> None:
    assert yes_or_no(text) is True


@pytest.mark.parametrize("text", ["no", "N", "nope", "No, thanks", "no thank you", "not now"])
def test_no(text: str) -> None:
    assert yes_or_no(text) is False


@pytest.mark.parametrize("text", [None, "", "maybe", "prime report", "yes no"])
def test_neither(text: str | None) -> None:
    assert yes_or_no(text) is None
