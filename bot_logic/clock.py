"""Time as a dependency, so expiry decisions are tested without sleeping."""

import time
from collections.abc import Callable

Clock = Callable[[], float]  # seconds since the epoch, UTC

system_clock: Clock = time.time
