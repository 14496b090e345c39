"""`python -m bench.baseline --port PORT`: the baseline bot (app.py) as its own process, like a
sample's `python app.py`. It reads the app's settings from the environment (services/settings.py)."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from bench.baseline.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
