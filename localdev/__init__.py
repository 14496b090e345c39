"""Everything that exists only for running and testing the bot on a developer's machine."""
