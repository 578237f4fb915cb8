"""Calls a twistor AMP server's commands and prints what came back, as one JSON object.

Usage: amp_client.py PORT
"""

import json
import sys

from twisted.internet import defer, endpoints, task
from twisted.protocols import amp

from amp_commands import Describe, Divide, Fail, Nope, Sum


@defer.inlineCallbacks
def main(reactor, port):
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", int(port))
    proto = yield endpoints.connectProtocol(endpoint, amp.AMP())
    out = {}
    out["sum"] = (yield proto.callRemote(Sum, a=13, b=81))["total"]
    out["divide"] = (yield proto.callRemote(Divide, numerator=1, denominator=4))["result"]
    try:
        yield proto.callRemote(Divide, numerator=1, denominator=0)
        out["zero"] = "no error"
    except ZeroDivisionError as e:
        out["zero"] = "ZeroDivisionError: %s" % (e,)
    answer = yield proto.callRemote(
        Describe,
        name="w\u00f6rld",
        flag=True,
        weight=2.5,
        blob=b"\x00\x01\xffab",
        values=[3, -1, 2**40],
        note="\u2713",
    )
    answer["reversed"] = list(answer["reversed"])
    out["describe"] = answer
    try:
        yield proto.callRemote(Nope)
        out["nope"] = "no error"
    except amp.UnhandledCommand as e:
        out["nope"] = "UnhandledCommand"
    try:
        yield proto.callRemote(Fail)
        out["fail"] = "no error"
    except amp.UnknownRemoteError as e:
        out["fail"] = "UnknownRemoteError"
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
