"""`python -m bench.agents_baseline --port PORT`: the Agents SDK baseline (app.py) as its own process,
like a sample's `python -m src.main`. It reads the app's settings from the environment."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from bench.agents_baseline.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agents_baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Anonymous (no app id) by design here: the SDK's per-turn warning about it would only load the log.
    logging.getLogger("microsoft_agents.hosting.core.connector.client.user_token_client").setLevel(logging.ERROR)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
