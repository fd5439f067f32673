#!/usr/bin/env python3
"""Writes a one-day trace in the Azure Functions 2021 format (app,func,end_timestamp,duration)
with a mix of invocation patterns seen in "Serverless in the Wild" (ATC'20): timer-triggered
periodic functions, rare functions, busy functions and on-off bursts. Deterministic for a seed.

    python3 bench/sim/make_mix_trace.py > /tmp/mix-2021.csv
    stratus sim --trace /tmp/mix-2021.csv --format azure2021 --policy hybrid --json
"""
import random
import sys

DAY = 86400.0


def main(seed=1):
    rng = random.Random(seed)
    rows = []

    def emit(app, fn, start, dur):
        if 0 <= start < DAY:
            rows.append((start + dur, f"app{app}", f"fn{fn}", dur))

    fn = 0
    # Timer-triggered: fixed period, a few seconds of jitter.
    for i in range(200):
        period = rng.choice([60, 120, 300, 600, 900, 1800, 3600, 7200])
        dur = rng.uniform(0.05, 2.0)
        t = rng.uniform(0, period)
        while t < DAY:
            emit(i % 40, fn, t + rng.uniform(0, 2), dur)
            t += period
        fn += 1
    # Rare: Poisson, mean gap 5 min to 2 h.
    for i in range(200):
        gap = rng.uniform(300, 7200)
        dur = rng.uniform(0.05, 1.0)
        t = rng.expovariate(1 / gap)
        while t < DAY:
            emit(40 + i % 40, fn, t, dur)
            t += rng.expovariate(1 / gap)
        fn += 1
    # Busy: Poisson at 0.2-1 per second.
    for i in range(10):
        rate = rng.uniform(0.2, 1.0)
        t = rng.expovariate(rate)
        while t < DAY:
            emit(80 + i, fn, t, rng.expovariate(1 / 0.2))
            t += rng.expovariate(rate)
        fn += 1
    # On-off: 5-minute bursts at 1/s every 1-4 hours.
    for i in range(50):
        every = rng.uniform(3600, 4 * 3600)
        t0 = rng.uniform(0, every)
        while t0 < DAY:
            t = t0
            while t < t0 + 300:
                emit(90 + i % 10, fn, t, rng.uniform(0.1, 0.5))
                t += rng.expovariate(1.0)
            t0 += every
        fn += 1
    rows.sort()
    out = sys.stdout
    out.write("app,func,end_timestamp,duration\n")
    for end, app, f, dur in rows:
        out.write(f"{app},{f},{end:.3f},{dur:.3f}\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
