"""A Twisted AMP server for the twistor AMP client; prints "port N" once listening."""

import sys

from twisted.internet import endpoints, reactor
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from amp_commands import Describe, Divide, Sum, describe


class Server(amp.AMP):
    @Sum.responder
    def sum(self, a, b):
        return {"total": a + b}

    @Divide.responder
    def divide(self, numerator, denominator):
        return {"result": numerator / denominator}

    @Describe.responder
    def describe(self, **kw):
        return describe(**kw)


def listening(port):
    print("port %d" % port.getHost().port, flush=True)


endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
endpoint.listen(Factory.forProtocol(Server)).addCallback(listening)
reactor.run()
