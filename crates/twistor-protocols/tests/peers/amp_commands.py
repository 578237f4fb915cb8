"""AMP commands shared by the interop peers; tests/amp.rs declares the same ones."""

from twisted.protocols import amp


class Sum(amp.Command):
    arguments = [(b"a", amp.Integer()), (b"b", amp.Integer())]
    response = [(b"total", amp.Integer())]


class Divide(amp.Command):
    arguments = [(b"numerator", amp.Integer()), (b"denominator", amp.Integer())]
    response = [(b"result", amp.Float())]
    errors = {ZeroDivisionError: b"ZERO_DIVISION"}


class Describe(amp.Command):
    arguments = [
        (b"name", amp.Unicode()),
        (b"flag", amp.Boolean()),
        (b"weight", amp.Float()),
        (b"blob", amp.String()),
        (b"values", amp.ListOf(amp.Integer())),
        (b"note", amp.Unicode(optional=True)),
    ]
    response = [
        (b"greeting", amp.Unicode()),
        (b"inverted", amp.Boolean()),
        (b"half", amp.Float()),
        (b"reversed", amp.String()),
        (b"count", amp.Integer()),
        (b"doubled", amp.ListOf(amp.Integer())),
        (b"items", amp.AmpList([(b"index", amp.Integer()), (b"label", amp.Unicode())])),
    ]


class Nope(amp.Command):
    """Nobody answers this one."""


class Fail(amp.Command):
    """The responder fails with an error the command does not declare."""


def describe(name, flag, weight, blob, values, note=None):
    greeting = "hello, " + name + (" (" + note + ")" if note is not None else "")
    return {
        "greeting": greeting,
        "inverted": not flag,
        "half": weight / 2,
        "reversed": blob[::-1],
        "count": len(values),
        "doubled": [2 * v for v in values],
        "items": [{"index": i, "label": "#%d" % i} for i in range(len(values))],
    }
