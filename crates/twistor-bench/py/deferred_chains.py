"""Twisted's Deferred chains, timed the way twistor-bench times twistor's.

Usage: python3 deferred_chains.py CHAINS CALLBACKS
Prints two lines, `added-then-fired NS` and `fired-then-added NS`: CPU nanoseconds per
callback for chains of CALLBACKS callbacks, built and fired CHAINS times.
"""
import sys
import time

from twisted.internet.defer import Deferred, succeed

chains, callbacks = int(sys.argv[1]), int(sys.argv[2])


def add_one(x):
    return x + 1


def added_then_fired(n):
    total = 0
    for i in range(n):
        d = Deferred()
        for _ in range(callbacks):
            d.addCallback(add_one)
        d.addCallback(lambda v: v)
        d.callback(i)
        total += d.result
    return total


def fired_then_added(n):
    total = 0
    for i in range(n):
        d = succeed(i)
        for _ in range(callbacks):
            d.addCallback(add_one)
        total += d.result
    return total


for name, run in (("added-then-fired", added_then_fired), ("fired-then-added", fired_then_added)):
    run(chains // 10)  # warm up
    start = time.process_time()
    run(chains)
    elapsed = time.process_time() - start
    print(name, elapsed * 1e9 / (chains * callbacks))
