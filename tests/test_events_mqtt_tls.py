"""The MQTT sink over TLS, against a Mosquitto of the test's own with a TLS listener and a
certificate from a throwaway CA made here (`cryptography`).

What is shown: with `[mqtt] url = "mqtts://..."` and `tls_ca_file` naming that CA, events reach
an independent subscriber (on the broker's plain listener); with another CA the sink does not
connect, says why in one log line (certificate verification), keeps trying and never raises
into the message path. Skips only where the `mosquitto` binary is not installed."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import MqttConfig
from gateway.events import EventKind
from gateway.mqtt_sink import MqttSink
from tests.daemon_processes import free_port
from tests.mqtt_broker import PrivateBroker, Subscriber, TlsListener, unique_prefix
from tests.waiting import WAIT, wait_for


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def pem(self, path: Path) -> Path:
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_authority(name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


def server_certificate(authority: Authority, directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by `authority`: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    certificate = (
        _builder(subject, authority.certificate.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(authority.key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture
def tls_broker(tmp_path: Path) -> tuple[PrivateBroker, Authority]:
    authority = make_authority("Tandem test CA")
    cert_file, key_file = server_certificate(authority, tmp_path)
    broker = PrivateBroker(free_port(), tmp_path, tls=TlsListener(free_port(), cert_file, key_file))
    return broker.start(), authority


def sink_over_tls(broker: PrivateBroker, ca_file: Path, prefix: str) -> MqttSink:
    assert broker.tls is not None
    settings = {
        "url": f"mqtts://127.0.0.1:{broker.tls.port}",
        "tls_ca_file": str(ca_file),
        "topic_prefix": prefix,
        "client_id": prefix.rstrip("/"),
        "keepalive": 5,
        "timeout": 10,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
    }
    return MqttSink(MqttConfig.model_validate(settings))


async def test_events_arrive_over_tls_with_the_brokers_ca(
    tls_broker: tuple[PrivateBroker, Authority], tmp_path: Path
) -> None:
    broker, authority = tls_broker
    prefix = unique_prefix()
    subscriber = Subscriber(broker.port, prefix).start()  # plain TCP: not the code under test
    sink = sink_over_tls(broker, authority.pem(tmp_path / "ca.pem"), prefix)
    await sink.start()
    try:
        await asyncio.wait_for(sink.connected.wait(), WAIT)
        sink.publish(EventKind.RECEIPT, "m1", {"id": "m1", "status": "delivered"})
        await asyncio.to_thread(
            subscriber.wait, lambda: subscriber.on(f"{prefix}receipt/m1"), "m1 over TLS"
        )
        assert subscriber.on(f"{prefix}receipt/m1") == ['{"id":"m1","status":"delivered"}']
        assert subscriber.on(f"{prefix}status")[-1] == "online"
        # The subscriber can see the event before the broker's PUBACK reaches the sink, which
        # counts an event as sent only once it is acknowledged.
        await wait_for(lambda: sink.stats.sent >= 1, "the broker's acknowledgement")
        assert sink.stats.connect_failures == 0
    finally:
        await sink.stop()
        subscriber.stop()
        broker.stop()


async def test_a_broker_certificate_from_another_ca_is_refused_with_a_clear_log_line(
    tls_broker: tuple[PrivateBroker, Authority],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, _ = tls_broker
    stranger = make_authority("Someone else's CA").pem(tmp_path / "other-ca.pem")
    sink = sink_over_tls(broker, stranger, unique_prefix())
    caplog.set_level(logging.WARNING, logger="tandem.mqtt")
    await sink.start()
    try:
        sink.publish(EventKind.RECEIPT, "m1", {"id": "m1"})  # buffered, never raises
        await wait_for(lambda: sink.stats.connect_failures >= 2, "two refused connects")
        assert not sink.connected.is_set()
        assert sink.stats.sent == 0 and sink.stats.buffered == 1
        refusals = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
        assert refusals, caplog.text
        assert "certificate verify failed" in refusals[0].lower(), refusals[0]
        assert "\n" not in refusals[0]
    finally:
        await sink.stop()
        broker.stop()
    assert sink.stats.dropped == 1  # what was never sent is counted at stop
