"""A queue consumer stand-in: takes a job every few seconds, forever."""

import os
import time

interval = float(os.environ.get("TICK_SECONDS", "2"))
n = 0
while True:
    n += 1
    print(f"tick {n}: processed job {n}")
    time.sleep(interval)
