"""`python -m bench.baseline --port PORT`: the baseline bot (app.py) as its own process, like a
sample's `python app.py`. It reads the app's settings from the environment (services/settings.py)."""

from __future__ import annotations

from bench.baseline.app import create_app
from bench.baseline.process import serve


def main(argv: list[str] | None = None) -> None:
    serve("bench.baseline", __doc__, create_app, argv, banner=True)


if __name__ == "__main__":
    main()
