"""`python -m bench.agents_baseline --port PORT`: the Agents SDK baseline (app.py) as its own process,
like a sample's `python -m src.main`. It reads the app's settings from the environment."""

from __future__ import annotations

import logging

from bench.agents_baseline.app import create_app
from bench.baseline.process import serve


def main(argv: list[str] | None = None) -> None:
    # Anonymous (no app id) by design here: the SDK's per-turn warning about it would only load the log.
    logging.getLogger("microsoft_agents.hosting.core.connector.client.user_token_client").setLevel(logging.ERROR)
    serve("bench.agents_baseline", __doc__, create_app, argv, banner=False)


if __name__ == "__main__":
    main()
