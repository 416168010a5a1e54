"""The administration API: the part of Service Bus's ATOM/XML REST API that cloudq uses.

``ServiceBusAdministrationClient`` always speaks HTTPS (SDK 7.15 ignores ``use_tls`` for it),
so this server listens with TLS on a certificate made at start for 127.0.0.1; the certificate's
PEM path is ``AdminServer.ca_file``, for ``REQUESTS_CA_BUNDLE``. Requests are not
authenticated (the SharedAccessSignature header is accepted as is).

Served: ``PUT /{queue}`` (create; with ``If-Match: *`` update), ``GET /{queue}`` (the queue's
description with its runtime counts), ``DELETE /{queue}``. Topics, subscriptions, rules,
namespace properties and listing are not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import ssl
import tempfile
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from tests.servicebus_endpoint.store import (
    MAX_LOCK_SECONDS,
    EndpointError,
    Queue,
    QueueProperties,
    Store,
)

logger = logging.getLogger("servicebus_endpoint.admin")

ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNTS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str) -> float:
    """ISO 8601 duration (``PT30S``, ``P1DT2H``) in seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise EndpointError("com.microsoft:argument-error", f"bad duration {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    frac = seconds - whole
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    out = "P" + (f"{days}D" if days else "") + "T"
    out += f"{hours}H" if hours else ""
    out += f"{minutes}M" if minutes else ""
    out += f"{secs + frac:g}S"
    return out


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_description(body: bytes) -> QueueProperties:
    """The settings of a ``QueueDescription`` in a PUT body (missing ones: defaults)."""
    props = QueueProperties()
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise EndpointError("com.microsoft:argument-error", f"bad XML: {exc}") from exc
    desc = root.find(f".//{{{SB}}}QueueDescription")
    if desc is None:
        raise EndpointError("com.microsoft:argument-error", "no QueueDescription in the body")
    lock = desc.findtext(f"{{{SB}}}LockDuration")
    if lock:
        props.lock_seconds = parse_duration(lock)
        if not 0 < props.lock_seconds <= MAX_LOCK_SECONDS:
            raise EndpointError(
                "com.microsoft:argument-out-of-range",
                f"LockDuration {lock} is outside 0..PT5M",
            )
    count = desc.findtext(f"{{{SB}}}MaxDeliveryCount")
    if count:
        props.max_delivery_count = int(count)
    forward = desc.findtext(f"{{{SB}}}ForwardDeadLetteredMessagesTo")
    if forward:
        props.forward_dead_letters_to = forward
    size = desc.findtext(f"{{{SB}}}MaxSizeInMegabytes")
    if size:
        props.max_size_mb = int(size)
    sessions = desc.findtext(f"{{{SB}}}RequiresSession")
    props.requires_session = (sessions or "false").lower() == "true"
    for unsupported in ("RequiresDuplicateDetection", "EnablePartitioning"):
        if (desc.findtext(f"{{{SB}}}{unsupported}") or "false").lower() == "true":
            raise EndpointError(
                "amqp:not-implemented", f"{unsupported} is not implemented by this test endpoint"
            )
    return props


def entry_xml(queue: Queue, counts: dict[str, int], base_url: str) -> str:
    p = queue.props
    detail = "".join(
        f"<d2p1:{name}>{counts[name]}</d2p1:{name}>"
        for name in (
            "ActiveMessageCount",
            "DeadLetterMessageCount",
            "ScheduledMessageCount",
            "TransferMessageCount",
            "TransferDeadLetterMessageCount",
        )
    )
    name = escape(queue.name)
    return (
        f'<entry xmlns="{ATOM}"><id>{base_url}/{name}</id><title type="text">{name}</title>'
        f"<published>{_iso(p.created_at)}</published><updated>{_iso(p.updated_at)}</updated>"
        f'<author><name>servicebus-endpoint</name></author><link rel="self" href="{name}"/>'
        f'<content type="application/xml"><QueueDescription xmlns="{SB}" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        f"<LockDuration>{format_duration(p.lock_seconds)}</LockDuration>"
        f"<MaxSizeInMegabytes>{p.max_size_mb}</MaxSizeInMegabytes>"
        "<RequiresDuplicateDetection>false</RequiresDuplicateDetection>"
        f"<RequiresSession>{str(p.requires_session).lower()}</RequiresSession>"
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>"
        "<DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration>"
        "<DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow>"
        f"<MaxDeliveryCount>{p.max_delivery_count}</MaxDeliveryCount>"
        "<EnableBatchedOperations>true</EnableBatchedOperations>"
        f"<SizeInBytes>{counts['SizeInBytes']}</SizeInBytes>"
        f"<MessageCount>{counts['MessageCount']}</MessageCount>"
        "<IsAnonymousAccessible>false</IsAnonymousAccessible>"
        "<AuthorizationRules></AuthorizationRules>"
        "<Status>Active</Status>"
        f"<CreatedAt>{_iso(p.created_at)}</CreatedAt><UpdatedAt>{_iso(p.updated_at)}</UpdatedAt>"
        f"<AccessedAt>{_iso(p.updated_at)}</AccessedAt>"
        "<SupportOrdering>true</SupportOrdering>"
        f'<CountDetails xmlns:d2p1="{COUNTS}">{detail}</CountDetails>'
        "<AutoDeleteOnIdle>P10675199DT2H48M5.4775807S</AutoDeleteOnIdle>"
        "<EnablePartitioning>false</EnablePartitioning>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus>"
        "<EnableExpress>false</EnableExpress>"
        + (
            f"<ForwardDeadLetteredMessagesTo>{escape(p.forward_dead_letters_to)}"
            "</ForwardDeadLetteredMessagesTo>"
            if p.forward_dead_letters_to
            else ""
        )
        + "<MaxMessageSizeInKilobytes>256</MaxMessageSizeInKilobytes>"
        "</QueueDescription></content></entry>"
    )


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "servicebus-endpoint")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "admin-cert.pem", directory / "admin-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _entity(self) -> str:
        return unquote(urlsplit(self.path).path).strip("/")

    def _reply(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: EndpointError) -> None:
        detail = escape(f"{exc.description} ({exc.condition})")
        self._reply(
            exc.status, f"<Error><Code>{exc.status}</Code><Detail>{detail}</Detail></Error>"
        )

    def _entry(self, queue: Queue, status: int) -> None:
        counts = self.server.store.counts(queue.name)
        self._reply(status, entry_xml(queue, counts, f"https://{self.headers.get('Host', '')}"))

    def do_GET(self) -> None:
        try:
            queue = self.server.store.find(self._entity())
            if queue is None:
                raise EndpointError(
                    "amqp:not-found", f"Queue '{self._entity()}' does not exist.", 404
                )
            self._entry(queue, 200)
        except EndpointError as exc:
            self._error(exc)

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            props = parse_description(body)
            name = self._entity()
            if self.headers.get("If-Match"):
                queue = self.server.store.update(name, props)
                self._entry(queue, 200)
            else:
                queue = self.server.store.create(name, props)
                self._entry(queue, 201)
        except EndpointError as exc:
            self._error(exc)

    def do_DELETE(self) -> None:
        try:
            self.server.store.delete(self._entity())
            self._reply(200)
        except EndpointError as exc:
            self._error(exc)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        super().__init__(address, _Handler)
        self.store = store


class AdminServer:
    """HTTPS on ``host:port`` (0: a free port) in a thread of its own."""

    def __init__(self, store: Store, host: str, port: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="servicebus-endpoint-")
        cert, key = make_certificate(Path(self._dir.name))
        self.ca_file = str(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._httpd = _Server((host, port), store)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._dir.cleanup()
