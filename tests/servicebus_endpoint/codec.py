"""AMQP 1.0 message sections as bytes: split, read, rebuild.

The endpoint stores every message as the encoded bytes the client sent and rebuilds the header
and message annotations on each delivery. Working on sections (not on ``proton.Message``) keeps
the body byte for byte (several data sections, sequences, values) and lets us write the header's
``delivery-count`` even when it is 0: proton omits a header whose fields are all defaults, and the
SDK then reports ``delivery_count`` as None.
"""

from __future__ import annotations

from typing import Any

from proton import Data, Described, symbol, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

Section = tuple[int, bytes]
"""(descriptor code, the whole encoded section)."""


class CodecError(ValueError):
    """Bytes that are not an AMQP 1.0 message."""


def _decode_one(raw: bytes | memoryview) -> tuple[Any, int]:
    data = Data()
    used = data.decode(bytes(raw))
    if used <= 0:
        raise CodecError("not an AMQP value")
    data.rewind()
    data.next()
    # proton hands binaries out as memoryviews into ``data``'s own buffer: copy them now.
    return _owned(data.get_object()), used


def _owned(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Described):
        return Described(value.descriptor, _owned(value.value))
    if isinstance(value, dict):
        return {_owned(k): _owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_owned(v) for v in value]
    return value


def split_sections(raw: bytes) -> list[Section]:
    """The message's sections in order; raises ``CodecError`` on anything else."""
    sections: list[Section] = []
    view = memoryview(raw)
    offset = 0
    while offset < len(raw):
        value, used = _decode_one(view[offset:])
        if not isinstance(value, Described) or not isinstance(value.descriptor, int):
            raise CodecError("a message section must be a described type with a numeric code")
        code = int(value.descriptor)
        if not HEADER <= code <= FOOTER:
            raise CodecError(f"unknown message section 0x{code:x}")
        sections.append((code, bytes(view[offset : offset + used])))
        offset += used
    return sections


def section_value(section: Section) -> Any:
    """The decoded value of one section (a list, a dict, bytes...)."""
    value, _ = _decode_one(section[1])
    return value.value


def encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def header_section(delivery_count: int) -> bytes:
    """A header with every field written: durable, priority 4, no ttl, first-acquirer, count."""
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(HEADER)
    data.put_list()
    data.enter()
    data.put_bool(True)
    data.put_ubyte(4)
    data.put_null()
    data.put_bool(delivery_count == 0)
    data.put_uint(delivery_count)
    data.exit()
    data.exit()
    return bytes(data.encode())


def message_annotations(sections: list[Section]) -> dict[Any, Any]:
    for section in sections:
        if section[0] == MESSAGE_ANNOTATIONS:
            value = section_value(section)
            return dict(value) if isinstance(value, dict) else {}
    return {}


GROUP_ID_FIELD = 10
"""Index of ``group-id`` in the properties list: Service Bus's SessionId."""


def group_id(sections: list[Section]) -> str | None:
    """The message's ``group-id`` (its session), if set."""
    for section in sections:
        if section[0] == PROPERTIES:
            fields = section_value(section)
            if isinstance(fields, list) and len(fields) > GROUP_ID_FIELD:
                value = fields[GROUP_ID_FIELD]
                if isinstance(value, bytes):
                    return value.decode("utf-8", "replace")
                return None if value is None else str(value)
    return None


def application_properties(sections: list[Section]) -> dict[Any, Any]:
    for section in sections:
        if section[0] == APPLICATION_PROPERTIES:
            value = section_value(section)
            return dict(value) if isinstance(value, dict) else {}
    return {}


def rebuild(
    sections: list[Section],
    delivery_count: int,
    extra_annotations: dict[str, Any],
    extra_properties: dict[str, Any] | None = None,
) -> bytes:
    """The message with a fresh header, ``extra_annotations`` merged into its message
    annotations and ``extra_properties`` into its application properties."""
    merged = message_annotations(sections)
    merged.update({symbol(k): v for k, v in extra_annotations.items()})
    out = [header_section(delivery_count)]
    for code, raw in sections:
        if code == DELIVERY_ANNOTATIONS:
            out.append(raw)
    out.append(encode_section(MESSAGE_ANNOTATIONS, merged))
    if extra_properties:
        props = application_properties(sections)
        props.update(extra_properties)
        rest = [
            s for s in sections if s[0] not in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS)
        ]
        for code, raw in rest:
            if code == PROPERTIES:
                out.append(raw)
        out.append(encode_section(APPLICATION_PROPERTIES, props))
        out.extend(raw for code, raw in rest if code not in (PROPERTIES, APPLICATION_PROPERTIES))
    else:
        out.extend(
            raw
            for code, raw in sections
            if code not in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS)
        )
    return b"".join(out)


def unpack_batch(sections: list[Section]) -> list[bytes] | None:
    """The inner messages if this is the SDK's batch envelope, else None.

    A batch (message format 0x80013700) carries one encoded message per data section. proton's
    Python binding does not expose a transfer's message format, so a batch is recognised by its
    shape: data sections only, each of which is itself a whole AMQP message.
    """
    bodies = [s for s in sections if s[0] == DATA]
    if not bodies or any(s[0] in (AMQP_SEQUENCE, AMQP_VALUE) for s in sections):
        return None
    inner: list[bytes] = []
    for section in bodies:
        payload = section_value(section)
        if not isinstance(payload, bytes) or payload[:2] != b"\x00\x53":
            return None
        try:
            split_sections(payload)
        except (CodecError, Exception):
            return None
        inner.append(payload)
    return inner
