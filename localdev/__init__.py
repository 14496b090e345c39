"""Everything that exists only for running and testing the bot on a developer's machine.

Two stand-alone servers, each with its README.md and its tests beside it: functions_host/ (a local
stand-in for `func start`) and directline/ (a local Direct Line and Bot Connector API). Around them:
emulators.py (Azurite and the Cosmos DB stand-in in cosmos/), stack.py (the whole bot, started one
way for `make run`, the end-to-end tests and the benchmarks), run.py (`make run`), chat_cli.py,
settings_file.py and app_settings.py.
"""
