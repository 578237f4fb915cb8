"""Twisted's classic echo client: sends a message, prints the whole echo, exits 0 on success."""
import sys
from twisted.internet import protocol, reactor

port = int(sys.argv[1])
message = sys.argv[2].encode()
result = {"ok": False}


class EchoClient(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.transport.write(message)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= len(message):
            print("Server said:", self.received.decode(), flush=True)
            result["ok"] = self.received == message
            self.transport.loseConnection()


class EchoFactory(protocol.ClientFactory):
    protocol = EchoClient

    def clientConnectionFailed(self, connector, reason):
        print("Connection failed:", reason.getErrorMessage(), flush=True)
        reactor.stop()

    def clientConnectionLost(self, connector, reason):
        reactor.stop()


reactor.connectTCP("127.0.0.1", port, EchoFactory())
reactor.run()
sys.exit(0 if result["ok"] else 1)
