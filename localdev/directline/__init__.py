"""A local Direct Line 3.0 service with the Bot Connector API, for running the bot without Azure.

    python -m localdev.directline --port 7072 --bot-endpoint http://127.0.0.1:7071/api/messages --secret S

See app.create_app (the aiohttp app), server.DirectLineServer (in the running event loop) and
server.start_directline_process (a child process), store.py for the memory limits,
agent_console.py for the human-handoff agent console (/agent), README.md.
"""

from localdev.directline.app import create_app
from localdev.directline.server import DirectLineProcess, DirectLineServer, start_directline_process

__all__ = ["DirectLineProcess", "DirectLineServer", "create_app", "start_directline_process"]
