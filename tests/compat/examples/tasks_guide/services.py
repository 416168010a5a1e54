"""Stand-ins for the services the guide's examples call (Twitter, a database, a renderer):
the examples themselves are Celery's, changed only in their imports."""

import errno

calls = []


class Twitter:
    class FailWhaleError(Exception):
        pass

    class LoginError(Exception):
        pass

    failures = 0
    """How many calls fail (FailWhaleError) before one succeeds."""

    def __init__(self, oauth):
        self.oauth = oauth

    @classmethod
    def _maybe_fail(cls):
        calls.append("twitter")
        if cls.failures:
            cls.failures -= 1
            raise cls.FailWhaleError("fail whale")

    def update_status(self, tweet):
        self._maybe_fail()
        return tweet


class _TwitterModule:
    FailWhaleError = Twitter.FailWhaleError

    def refresh_timeline(self, user):
        Twitter._maybe_fail()
        return f"timeline of {user}"

    def get_timeline(self, user):
        return [f"{user}: hello"]


twitter = _TwitterModule()
FailWhaleError = Twitter.FailWhaleError


def something_raising():
    raise OSError("down")


class _Redis:
    def __init__(self):
        self.revoked = set()

    def ismember(self, key, member):
        return member in self.revoked


redis = _Redis()


class _Table:
    def all(self):
        return [1, 2, 3]


class Database:
    connections = 0

    def __init__(self):
        self.table = _Table()

    @classmethod
    def connect(cls):
        cls.connections += 1
        return cls()


def process_row(row):
    calls.append(("row", row))


def get_file(path):
    return path


class _Renderer:
    def render_scene(self, file):
        if file == "huge.blend":
            raise OSError(errno.ENOMEM, "out of memory")
        if file == "broken.blend":
            raise ValueError("corrupt")
        calls.append(("rendered", file))


renderer = _Renderer()


class User:
    class objects:
        @staticmethod
        def create(username, password):
            calls.append(("user", username))
