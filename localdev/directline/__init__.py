"""A local Direct Line 3.0 service with the Bot Connector API, for running the bot without Azure.

    python -m localdev.directline --port 7072 --bot-endpoint http://127.0.0.1:7071/api/messages --secret S

See app.create_app (the aiohttp app), server.DirectLineServer / DirectLineThread /
start_directline_process (ways to run it) and store.py for the memory limits.
"""

from localdev.directline.app import create_app
from localdev.directline.server import (
    BackgroundLoop,
    DirectLineProcess,
    DirectLineServer,
    DirectLineThread,
    start_directline_process,
)

__all__ = [
    "BackgroundLoop",
    "DirectLineProcess",
    "DirectLineServer",
    "DirectLineThread",
    "create_app",
    "start_directline_process",
]
