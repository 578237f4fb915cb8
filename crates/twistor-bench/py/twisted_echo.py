"""Twisted's echo server on CPython, the peer the twistor benchmarks compare against.

Usage: python3 twisted_echo.py PORT   (listens on 127.0.0.1:PORT; PORT 0 lets the OS choose)
Prints "twisted echo listening on PORT" once listening.

This is the echo server from Twisted's own examples (Protocol.dataReceived writes the bytes
back), on the epoll reactor, with Twisted's defaults otherwise.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    factory = protocol.Factory.forProtocol(Echo)
    factory.noisy = False
    listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
    print("twisted echo listening on %d" % listening.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
