"""Twisted's web server on CPython, the peer the twistor HTTP benchmarks compare against.

Usage: python3 twisted_web.py PORT   (listens on 127.0.0.1:PORT; PORT 0 lets the OS choose)
Prints "twisted web listening on PORT" once listening.

A twisted.web Site whose one leaf resource answers every GET with `Hello, world!` as
text/plain (Twisted adds Content-Length, Date and Server), on the epoll reactor, with
Twisted's defaults otherwise.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"Hello, world!\n"


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    site = server.Site(Hello())
    site.noisy = False
    # No access log: the other servers keep none either.
    site.log = lambda request: None
    listening = reactor.listenTCP(port, site, interface="127.0.0.1", backlog=1024)
    print("twisted web listening on %d" % listening.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
