"""The plain-SDK baseline: the same dialog hosted the way the Bot Framework's Python samples host a
bot (aiohttp, CloudAdapter, MemoryStorage), run as its own process (`python -m bench.baseline`)
and measured side by side with the app (bench/turns.py). app.py is the bot, process.py starts it."""
