"""The plain-SDK baseline: the same dialog hosted the way the Bot Framework's Python samples host a
bot (aiohttp, CloudAdapter, MemoryStorage), run as its own process (`python -m bench.baseline`)
and measured side by side with the app (bench/turns.py). app.py is the bot, process.py starts it."""

TURN_ERROR_LOG = "baseline turn error"  # app.py logs it per failed turn; the benchmark counts it in the log
