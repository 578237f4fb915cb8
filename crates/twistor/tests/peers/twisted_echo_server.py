"""Twisted's classic echo server on a port the OS picks; prints the port."""
import sys
from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    def buildProtocol(self, addr):
        return Echo()


port = reactor.listenTCP(0, EchoFactory(), interface="127.0.0.1")
print("listening on", port.getHost().port, flush=True)
reactor.run()
