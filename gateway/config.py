"""The one configuration model of the daemon, and how a TOML file becomes it.

Owns `TandemConfig` (composed of one pydantic model per section), loading it from a TOML file or
from the built-in default (`gateway/default.toml`), and turning validation failures into one-line
`ConfigError`s that name the file, the key and the reason. Every knob of the daemon lives here;
no other module reads TOML or environment variables for settings.

Must never start anything, open sockets or touch the data directory: loading a config only reads
the file and validates it, so `tandem check-config` is side-effect free.

Unknown keys are errors (`extra="forbid"`) and values are not coerced across TOML types
(`strict=True`: `window = "10"` is a mistake, not a number), so typos cannot pass silently.
Relative paths are kept as written and resolve against the daemon's working directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import tomllib
import urllib.parse
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dlr.aggregate import ReportMode
from dlr.ids import MessageIdFormat
from gateway.addresses import SHORT_CODE_MAX_DIGITS, InvalidSender, check_sender
from gateway.optouts import keywords
from routing.config import MessageKind, NumberingConfig, RouteList
from smpp.segmentation import Concatenation

BUILTIN_SOURCE = "<built-in default>"

# Base for every section: unknown keys and cross-type coercion are configuration mistakes.
_SECTION = ConfigDict(extra="forbid", strict=True, frozen=False, validate_default=True)

# Paths come from TOML as strings; strict mode would otherwise demand `Path` instances.
FilePath = Annotated[Path, Field(strict=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
# Port 0 asks the OS for a free port: useful for tests and the in-process simulator.
ListenPort = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0)]
# SMPP 3.4 5.2: TON and NPI are single octets; the spec defines 0-6 and 0-18, carriers use more.
AddressByte = Annotated[int, Field(ge=0, le=255)]
MessageIdFormatName = Annotated[MessageIdFormat, Field(strict=False)]
ReportModeName = Annotated[ReportMode, Field(strict=False)]
ConcatenationMethod = Annotated[Concatenation, Field(strict=False)]
BindMode = Literal["transmitter", "receiver", "transceiver"]
ALL_BIND_MODES: tuple[BindMode, ...] = ("transmitter", "receiver", "transceiver")


class ConfigError(Exception):
    """A configuration that cannot be used; `str()` is one line: `source: key: reason`."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class StoreConfig(BaseModel):
    model_config = _SECTION

    # "sqlite": one file, one node (the zero-setup default). "postgresql": several nodes on one
    # database (docs/scale-out.md); needs `dsn`.
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    # None: `<data_dir>/tandem.db`; see `TandemConfig.store_path`. SQLite only.
    path: FilePath | None = None
    # FULL survives power loss at the cost of an fsync per commit; NORMAL survives process crashes.
    # SQLite only (PostgreSQL's durability is its own `synchronous_commit`).
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # Where the one writer runs: a process of its own takes its work off the event loop's CPU
    # (bench/RESULTS.md has the figures); a thread of the daemon saves a process where there
    # is one CPU only; "inline" commits on the event loop's own thread, with no hop to wait
    # for (faster where the machine is shared and every wake-up waits for a CPU).
    writer: Literal["process", "thread", "inline"] = "process"
    # PostgreSQL: an asyncpg DSN ("postgresql://user@host:5432/db"), the schema the tables live
    # in (created if missing), the readers' pool size, and how long a node that stops renewing
    # its lease keeps its unsent messages before a live node takes them over.
    dsn: str | None = None
    database_schema: str = Field(default="tandem", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: int = Field(default=10, ge=1, le=200)
    lease_seconds: float = Field(default=15.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _postgresql_needs_a_dsn(self) -> StoreConfig:
        if self.backend == "postgresql" and not self.dsn:
            raise _KeyedError("store.dsn", 'backend = "postgresql" needs a dsn')
        return self


_NODE_NAME = r"^[A-Za-z0-9_.-]+$"


class NodeConfig(BaseModel):
    """This Tandem node among several on one database (`[store] backend = "postgresql"`)."""

    model_config = _SECTION

    # Unique among the nodes of one database; in logs, /readyz and /status. Default: the host
    # name.
    name: str = Field(
        default_factory=lambda: (
            re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:63] or "tandem"
        ),
        min_length=1,
        max_length=63,
        pattern=_NODE_NAME,
    )


# The nodes a link is pinned to (`nodes = ["node-a", "node-b"]`): only those run it; empty:
# every node does. Several nodes on PostgreSQL only.
PinnedNodes = list[Annotated[str, Field(min_length=1, max_length=63, pattern=_NODE_NAME)]]


def _check_pinned(nodes: list[str]) -> None:
    seen: set[str] = set()
    for node in nodes:
        if node in seen:
            raise ValueError(f"nodes names {node!r} twice")
        seen.add(node)


class SmppServerConfig(BaseModel):
    model_config = _SECTION

    enabled: bool = True
    host: str = "0.0.0.0"
    port: ListenPort = 2775
    # TLS listener beside the plain one; off unless a port, certificate and key are given.
    tls_port: ListenPort | None = None
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    # false: an unknown system_id, a wrong password and a bind from an address the account does
    # not allow are all answered ESME_RBINDFAIL after the same password check, so a prober cannot
    # tell which accounts exist; true: ESME_RINVSYSID / ESME_RINVPASWD as SMPP 3.4 words them.
    # The log says which it was either way.
    distinct_bind_failures: bool = False

    @model_validator(mode="after")
    def _tls_needs_certificate(self) -> SmppServerConfig:
        if self.tls_port is not None and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError("tls_port needs tls_cert_file and tls_key_file")
        return self


class HttpConfig(BaseModel):
    """The HTTP API (`gateway.http`) and the receipt callbacks it posts (`gateway.callbacks`)."""

    model_config = _SECTION

    enabled: bool = True
    host: str = "127.0.0.1"
    port: ListenPort = 8080
    # Per-key limits for keys created without their own (`tandem keys create --rps/--mps`).
    requests_per_second: Annotated[float, Field(gt=0)] = 50.0
    messages_per_second: Annotated[float, Field(gt=0)] = 50.0
    max_recipients: Annotated[int, Field(ge=1, le=1000)] = 1000
    # A repeated Idempotency-Key returns the first answer for this long (24 h). Older answers
    # are never replayed; `[retention]` deletes them (with it disabled they stay in the store).
    idempotency_seconds: Seconds = 86_400.0
    # Revoking a key with the CLI reaches a running daemon within this long.
    key_cache_seconds: Annotated[float, Field(ge=0)] = 5.0
    # The sender of a message sent without `from` (HTTP API, `tandem send`). None: the API
    # sends none (the carrier's own default) and `tandem send` asks for --from.
    default_sender: str | None = None
    # Receipt callbacks: "final" posts final statuses only, "all" every status change.
    callback_events: Literal["final", "all"] = "final"
    callback_timeout: Seconds = 10.0
    callback_concurrency: Annotated[int, Field(ge=1, le=1024)] = 64
    callback_retry_initial: Seconds = 5.0
    callback_retry_max_delay: Seconds = 1800.0
    # Give up on a callback URL that keeps failing after this long (24 h).
    callback_retry_for: Seconds = 86_400.0
    # The server's edge (`gateway.http.server_limits`): a request's head must arrive within
    # header_timeout of the connection opening (or of its first byte on a kept-alive
    # connection), and its body within header_timeout again; an idle kept-alive connection is
    # closed after keepalive_timeout; at max_connections a new connection closes the oldest
    # one that is waiting on its client. A header field over max_header_bytes gets 431.
    header_timeout: Seconds = 10.0
    keepalive_timeout: Seconds = 15.0
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    max_header_bytes: Annotated[int, Field(ge=1024, le=65536)] = 8190
    # Unknown bearer values per client address (an IPv6 client by its /64): a burst of
    # auth_failures_burst, then auth_failures_per_second; past it 429 without a key lookup.
    auth_failures_per_second: Annotated[float, Field(gt=0)] = 0.5
    auth_failures_burst: Annotated[int, Field(ge=1, le=10_000)] = 10
    # The token `/admin/` paths need (`gateway.http.admin_token`); the daemon creates it, mode
    # 0600, when missing. None: <data_dir>/admin.token.
    admin_token_file: FilePath | None = None
    # Reverse proxies in front of the API (addresses or CIDRs): from them, the client is the
    # rightmost X-Forwarded-For entry that is not one of them (per-client limits count it).
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _proxies_are_networks(self) -> HttpConfig:
        import ipaddress

        for index, entry in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                key = f"http.trusted_proxies[{index}]"
                raise _KeyedError(key, f"{entry!r} is not an address or CIDR") from None
        return self


DEFAULT_EGRESS_PORTS: tuple[int | str, ...] = (80, 443, 8080, 8443)


class EgressConfig(BaseModel):
    """Where customers' URLs (receipt callbacks, later inbound webhooks) may lead: the rule
    `gateway.egress` applies at every connect. Loopback, private, link-local, unique-local and
    multicast addresses are refused unless `allow` names them."""

    model_config = _SECTION

    # Addresses (CIDR, e.g. "10.1.2.0/24") and host names the operator trusts although they are
    # internal; nothing by default.
    allow: list[str] = Field(default_factory=list)
    # Ports a customer URL may name: numbers, or "low-high" ranges.
    ports: list[int | str] = Field(default_factory=lambda: list(DEFAULT_EGRESS_PORTS))
    # An HTTP proxy every customer connection goes through (CONNECT), e.g.
    # "http://127.0.0.1:3128"; it then resolves names and applies its own rules.
    proxy: str | None = None

    @field_validator("allow")
    @classmethod
    def _allow_entries(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not _is_network(entry) and not _HOST_NAME.match(entry):
                raise ValueError(f"{entry!r} is neither an address/CIDR nor a host name")
        return entries

    @field_validator("ports")
    @classmethod
    def _port_entries(cls, entries: list[int | str]) -> list[int | str]:
        for entry in entries:
            if port_range(entry) is None:
                raise ValueError(f"{entry!r} is not a port (1-65535) or a range 'low-high'")
        return entries

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, proxy: str | None) -> str | None:
        if proxy is not None:
            parts = urllib.parse.urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError("proxy must be an http:// URL naming a host (and port)")
        return proxy


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def port_range(entry: int | str) -> tuple[int, int] | None:
    """An `[egress] ports` entry as (low, high), or None when it is not one."""
    if isinstance(entry, int):
        low = high = entry
    else:
        low_text, dash, high_text = entry.partition("-")
        if not (low_text.strip().isdigit() and (not dash or high_text.strip().isdigit())):
            return None
        low = int(low_text)
        high = int(high_text) if dash else low
    return (low, high) if 1 <= low <= high <= 65535 else None


class OtpConfig(BaseModel):
    """One-time passwords (`gateway.otp`): code policy, SMS-pumping limits, templates."""

    model_config = _SECTION

    code_length: Annotated[int, Field(ge=4, le=10)] = 6
    ttl: Annotated[int, Field(ge=60, le=3600)] = 600
    max_checks: Annotated[int, Field(ge=1, le=100)] = 5
    # Sends (first send and re-sends) per destination within `send_window` seconds.
    max_sends: Annotated[int, Field(ge=1, le=100)] = 5
    send_window: Seconds = 600.0
    # Velocity limit per destination prefix (the first `prefix_digits` digits of E.164): more
    # than `prefix_max_sends` sends within `prefix_window` seconds blocks the prefix for
    # `prefix_block_seconds`. 0 turns the limit off.
    prefix_digits: Annotated[int, Field(ge=1, le=15)] = 6
    prefix_max_sends: Annotated[int, Field(ge=0)] = 200
    prefix_window: Seconds = 3600.0
    prefix_block_seconds: Seconds = 3600.0
    brand: str = "Tandem"
    default_sender: str = "Verify"
    default_locale: str = "en"
    # `{{code}}` is required; `{{ttl_minutes}}` and `{{brand}}` are optional.
    templates: dict[str, str] = Field(
        default_factory=lambda: {
            "en": "Your {{brand}} code is {{code}}. It expires in {{ttl_minutes}} minutes.",
            "de": "Ihr {{brand}}-Code lautet {{code}}. Er ist {{ttl_minutes}} Minuten gültig.",
            "fr": "Votre code {{brand}} est {{code}}. Il expire dans {{ttl_minutes}} minutes.",
            "es": "Tu código de {{brand}} es {{code}}. Caduca en {{ttl_minutes}} minutos.",
        }
    )

    @model_validator(mode="after")
    def _templates_hold_the_code(self) -> OtpConfig:
        for locale, template in self.templates.items():
            if "{{code}}" not in template:
                raise _KeyedError(f"otp.templates.{locale}", "a template must contain {{code}}")
        if self.default_locale not in self.templates:
            raise _KeyedError("otp.default_locale", f"no template for {self.default_locale!r}")
        return self


class SmppLinkConfig(BaseModel):
    """An outbound SMPP carrier link (`[[links]]` with `type = "smpp"`)."""

    model_config = _SECTION

    type: Literal["smpp"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    enabled: bool = True
    host: Annotated[str, Field(min_length=1)]
    port: Port = 2775
    # SMPP 3.4 4.1: system_id is a C-Octet String of at most 16 octets including the NUL,
    # password at most 9, system_type at most 13, address_range at most 41.
    system_id: Annotated[str, Field(min_length=1, max_length=15)]
    password: Annotated[str, Field(max_length=8)] = ""
    system_type: Annotated[str, Field(max_length=12)] = ""
    bind: BindMode = "transceiver"
    address_range: Annotated[str, Field(max_length=40)] = ""
    # None: chosen per message from the address (alphanumeric 5/0, international 1/1, ...).
    source_ton: AddressByte | None = None
    source_npi: AddressByte | None = None
    destination_ton: AddressByte = 1
    destination_npi: AddressByte = 1
    # Binds of the whole link. With several nodes on PostgreSQL, `sessions` and `tps` are the
    # carrier account's limits shared by the live nodes that run the link, not each node's
    # (gateway.links.budget).
    sessions: Annotated[int, Field(gt=0, le=64)] = 1
    window: Annotated[int, Field(gt=0, le=10_000)] = 10
    # Segments per second for the whole link (all its sessions); None: no limit.
    tps: Annotated[float, Field(gt=0)] | None = None
    nodes: PinnedNodes = Field(default_factory=list)
    enquire_link_interval: Seconds = 30.0
    response_timeout: Seconds = 10.0
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 60.0
    tls: bool = False
    tls_ca_file: FilePath | None = None
    concatenation: ConcatenationMethod = Concatenation.UDH8
    # How the carrier writes message ids in submit_sm_resp and in receipts; see dlr.ids.
    submit_id_format: MessageIdFormatName = MessageIdFormat.STR
    dlr_id_format: MessageIdFormatName = MessageIdFormat.STR
    # None: the [dlr] section's dlr_timeout.
    dlr_timeout: Seconds | None = None
    max_parts: Annotated[int, Field(ge=1, le=255)] = 10
    # Messages that may wait in this link's queue (scheduled ones included); past it intake
    # refuses more for now (SMPP ESME_RTHROTTLED, HTTP 503). None: no limit. Like Kannel's
    # sms-outgoing-queue-limit, whose default this is.
    queue_limit: Annotated[int, Field(ge=1)] | None = 1_000_000

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> SmppLinkConfig:
        _check_pinned(self.nodes)
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        if self.tls_ca_file is not None and not self.tls:
            raise ValueError("tls_ca_file is set but tls is off")
        return self


# Device URLs pyserial opens for network modem servers; anything else with "://" is a mistake.
MODEM_URL_SCHEMES = ("rfc2217", "socket")
STANDARD_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


class ModemLinkConfig(BaseModel):
    """A GSM modem (a SIM card) as an outbound link (`[[links]]` with `type = "modem"`):
    `gateway.links.modem` runs it with `modems.session` over `modems.serial_link`."""

    model_config = _SECTION

    type: Literal["modem"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    enabled: bool = True
    # The node whose machine has the modem, when several nodes share one configuration.
    nodes: PinnedNodes = Field(default_factory=list)
    # /dev/ttyUSB0, a stable /dev/serial/by-id/... link, or rfc2217://host:port and
    # socket://host:port for network modem servers.
    device: Annotated[str, Field(min_length=1)]
    # The SIM's own number (MSISDN), E.164 digits: the destination of the MOs it receives, which
    # inbound routes and accounts' mo_numbers match. A SIM does not reliably know it itself.
    number: Annotated[str, Field(pattern=r"^\+?[0-9]{3,15}$")] | None = None
    baud: int = 115200
    # Entered once when the SIM asks; a refused PIN stops the link (no second try).
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = None
    # The service centre number (+CSCA); None keeps the one on the SIM.
    smsc: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")] | None = None
    # Sent after PDU mode is set, in order; errors are logged and ignored.
    init_commands: list[Annotated[str, Field(pattern=r"^(?i:AT)[ -~]*$")]] = Field(
        default_factory=list
    )
    # Parts per minute this SIM may send (operators block SIMs that send too fast); None: as
    # fast as the modem goes.
    messages_per_minute: Annotated[float, Field(gt=0)] | None = 10.0
    # Parts a day; past it the link is capped until the day turns in `cap_time_zone`.
    daily_cap: Annotated[int, Field(ge=1)] | None = None
    cap_time_zone: str = "UTC"
    status_reports: bool = True
    storage: Literal["SM", "ME", "MT"] = "SM"
    # How the modem hands over MOs and reports: "stored" keeps each in `storage` and announces
    # it (+CMTI/+CDSI), deleted once the daemon has kept it; "direct" passes it at once
    # (+CMT/+CDS) without a stored copy, for modems whose storage is small or slow, with
    # +CSMS service 1 so that each is acknowledged (+CNMA) only once the daemon has kept it
    # (refused with RP-ERROR when it could not: the network offers it again).
    indications: Literal["stored", "direct"] = "stored"
    # Seconds between reads of the storage, for modems that announce nothing (+CMTI); None: off.
    poll_interval: Seconds | None = None
    signal_interval: Seconds = 30.0
    command_timeout: Seconds = 10.0
    send_timeout: Seconds = 60.0
    # Written when the modem stops answering; the port is reopened `reset_wait` seconds later.
    reset_command: Annotated[str, Field(pattern=r"^(?i:AT)[ -~]*$")] = "AT+CFUN=1,1"
    reset_wait: Seconds = 10.0
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 60.0
    # A handset joins parts by their UDH: udh8 or udh16 (SAR and payload are SMPP's only).
    concatenation: ConcatenationMethod = Concatenation.UDH8
    dlr_timeout: Seconds | None = None
    max_parts: Annotated[int, Field(ge=1, le=255)] = 10
    queue_limit: Annotated[int, Field(ge=1)] | None = 10_000

    @field_validator("concatenation")
    @classmethod
    def _user_data_header(cls, method: Concatenation) -> Concatenation:
        if method not in (Concatenation.UDH8, Concatenation.UDH16):
            raise ValueError(f"a modem concatenates with udh8 or udh16, not {method.value}")
        return method

    @field_validator("device")
    @classmethod
    def _device_opens(cls, device: str) -> str:
        scheme, separator, rest = device.partition("://")
        if not separator:
            return device
        if scheme.lower() not in MODEM_URL_SCHEMES:
            raise ValueError(
                f"{scheme}:// is not a modem device URL (a path, or one of: "
                + ", ".join(f"{s}://host:port" for s in MODEM_URL_SCHEMES)
                + ")"
            )
        host, colon, port = rest.partition("?")[0].rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{scheme}:// needs host:port, got {rest!r}")
        return device

    @field_validator("number")
    @classmethod
    def _digits_only(cls, number: str | None) -> str | None:
        return number.lstrip("+") if number is not None else None

    @field_validator("baud")
    @classmethod
    def _standard_baud(cls, baud: int) -> int:
        if baud not in STANDARD_BAUD_RATES:
            raise ValueError(f"{baud} is not a standard baud rate (115200 for most USB modems)")
        return baud

    @field_validator("cap_time_zone")
    @classmethod
    def _zone_exists(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> ModemLinkConfig:
        _check_pinned(self.nodes)
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")
        return self


# Discriminated on `type`: each kind of link is a model of its own, so a key of one kind in an
# entry of the other is an unknown key, named as such.
LinkConfig = Annotated[SmppLinkConfig | ModemLinkConfig, Field(discriminator="type")]
LINK_TYPES: tuple[str, ...] = ("smpp", "modem")


class AccountConfig(BaseModel):
    """An SMPP-server customer account (`[[accounts]]`, or the CLI-managed accounts file)."""

    model_config = _SECTION

    system_id: Annotated[str, Field(min_length=1, max_length=15)]
    # An argon2 hash (`tandem accounts add` / `passwd` write it), never the password itself.
    password_hash: Annotated[str, Field(min_length=1, pattern=r"^\$argon2")]
    enabled: bool = True
    max_binds: Annotated[int, Field(gt=0)] = 4
    bind_types: list[BindMode] = Field(default_factory=lambda: list(ALL_BIND_MODES), min_length=1)
    # Source networks a bind may come from (CIDR); the default allows any address.
    allowed_networks: list[str] = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"])
    # Segments per second over all binds of the account; beyond it ESME_RTHROTTLED. None: no cap.
    tps: Annotated[float, Field(gt=0)] | None = None
    # Outstanding requests one bind may have; reading pauses beyond it.
    window: Annotated[int, Field(gt=0, le=10_000)] = 100
    # Regular expressions a source_addr must fully match; empty: any sender.
    allowed_senders: list[str] = Field(default_factory=list)
    # A source_addr_ton that does not fit the sender (alphanumeric is TON 5, only it is; a
    # short code is not international): "set" replaces TON/NPI with the fitting ones,
    # "check" refuses the submit with ESME_RINVSRCTON.
    source_ton_npi: Literal["set", "check"] = "set"
    # Traffic kind given to this account's messages (routes match on kind and account).
    default_kind: Annotated[MessageKind, Field(strict=False)] = MessageKind.TRANSACTIONAL
    # Route tags this account's messages carry: a route with `tags` takes only messages that
    # carry one of them (a customer pinned to premium routes, say).
    route_tags: list[str] = Field(default_factory=list)
    # Numbers and short codes (digits, no '+') whose MOs are delivered to this account.
    mo_numbers: list[str] = Field(default_factory=list)
    # Concatenated submits and MOs: joined into one message, or kept as the parts they are.
    multipart: Literal["reassemble", "passthrough"] = "passthrough"
    # Receipts and MOs queued in memory for the account's receiving binds: at most this many
    # (receipts beyond it wait in the store; MOs beyond it are refused for now, so the carrier
    # offers them again), each for at most `delivery_ttl` seconds.
    delivery_queue_max: Annotated[int, Field(ge=0)] = 10_000
    delivery_ttl: Seconds = 86_400.0
    # The command_status a submit to a number that opted out is refused with. The default,
    # ESME_RX_P_APPN (0x65, "permanent application error"), says by its name that trying again
    # is pointless, and ESMEs retry only the statuses they know to be temporary (throttling,
    # queue full, ESME_RX_T_APPN): unlike ESME_RINVDSTADR it does not claim the number is
    # wrong, and unlike ESME_RSUBMITFAIL it is not a generic failure a gateway may offer to
    # another route. Set a vendor code (0x400-0x4FF) if a customer's ESME expects one.
    optout_status: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] = 0x65

    @model_validator(mode="after")
    def _patterns_and_networks_parse(self) -> AccountConfig:
        import ipaddress
        import re

        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"allowed_networks: {network!r} is not a network") from None
        for pattern in self.allowed_senders:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"allowed_senders: {pattern!r}: {exc}") from None
        return self


class SendersConfig(BaseModel):
    """Sender ids a message may come from, on every channel (`gateway.addresses` holds the
    rule: alphanumeric ids of at most 11 characters, numbers of at most 15 digits)."""

    model_config = _SECTION

    # Numeric senders without '+' of at most this many digits are short codes, not numbers.
    short_code_max_digits: Annotated[int, Field(ge=3, le=15)] = SHORT_CODE_MAX_DIGITS
    # The short codes messages may come from; empty: any of 3 to short_code_max_digits digits.
    short_codes: list[Annotated[str, Field(pattern=r"^[0-9]{3,15}$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _short_codes_are_short(self) -> SendersConfig:
        for code in self.short_codes:
            if len(code) > self.short_code_max_digits:
                raise ValueError(
                    f"short_codes: {code!r} is longer than short_code_max_digits "
                    f"({self.short_code_max_digits})"
                )
        return self


class DlrConfig(BaseModel):
    model_config = _SECTION

    # Receipts that arrive before their submit_sm_resp are held this long, at most this many.
    hold_max: Annotated[int, Field(ge=0)] = 100_000
    hold_seconds: Seconds = 60.0
    # A submitted message without a final receipt after this long is given up on (48 h).
    dlr_timeout: Seconds = 172_800.0
    # What customers (HTTP callbacks, SMPP receipts) are told about a multipart message:
    # "message" one report per change of the aggregated status, "segment" one per part's change.
    report: ReportModeName = ReportMode.MESSAGE


class QueueConfig(BaseModel):
    """The send queue (`gateway.queue`) and what intake answers when a backlog is full
    (`gateway.backlog`); the limits themselves are per link and per route (`queue_limit`)."""

    model_config = _SECTION

    # Messages ready to go kept whole in memory per link and priority; the rest of a backlog
    # waits in the store, the queue holding 12 octets per message, and is read back in pages.
    in_memory: Annotated[int, Field(ge=1)] = 50_000
    page: Annotated[int, Field(ge=1, le=10_000)] = 1_000
    # What a refused client is told to wait (HTTP Retry-After) when a backlog is full.
    retry_after: Seconds = 5.0


class MqttConfig(BaseModel):
    """The MQTT event sink (`gateway.mqtt_sink`): receipts, link states and MOs as JSON on a
    broker, and a retained `<prefix>status` that the broker's last will turns to "offline"."""

    model_config = _SECTION

    enabled: bool = True
    # The sink's name: inbound routes name it as a destination.
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = "mqtt"
    # mqtt://host[:port] (1883) or mqtts://host[:port] (8883, TLS); credentials go in
    # username/password, not in the URL (which the log shows).
    url: str = "mqtt://127.0.0.1:1883"
    tls: bool = False  # TLS on an mqtt:// URL too
    tls_ca_file: FilePath | None = None  # None: the system's trusted CAs
    tls_cert_file: FilePath | None = None  # a client certificate, for brokers that ask for one
    tls_key_file: FilePath | None = None
    username: str | None = None
    password: str | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=128)] = "tandem"
    topic_prefix: str = "tandem/"
    qos: Literal[0, 1, 2] = 1
    # The broker declares us gone (and publishes the last will) after 1.5 times this.
    keepalive: Annotated[int, Field(ge=1, le=65535)] = 30
    # Events waiting while the broker is slow or away; past it the oldest are dropped (counted).
    buffer: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    # Seconds a publish may wait for the broker's acknowledgement before the connection is
    # taken as broken and made again.
    timeout: Seconds = 10.0
    reconnect_initial: Seconds = 1.0
    reconnect_max: Seconds = 60.0

    @model_validator(mode="after")
    def _url_and_tls(self) -> MqttConfig:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise _KeyedError("mqtt.url", "must be mqtt://host[:port] or mqtts://host[:port]")
        if parts.username is not None or parts.password is not None:
            raise _KeyedError("mqtt.url", "put credentials in username and password, not the URL")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise _KeyedError("mqtt.url", str(exc)) from None
        if parts.path not in ("", "/"):
            raise _KeyedError("mqtt.url", "must not have a path")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise _KeyedError("mqtt.tls_cert_file", "tls_cert_file and tls_key_file go together")
        if self.password is not None and self.username is None:
            raise _KeyedError("mqtt.password", "a password needs a username")
        if self.reconnect_max < self.reconnect_initial:
            raise _KeyedError("mqtt.reconnect_max", "must be at least reconnect_initial")
        for wildcard in ("+", "#"):
            if wildcard in self.topic_prefix:
                raise _KeyedError("mqtt.topic_prefix", f"must not contain {wildcard!r}")
        return self

    @property
    def use_tls(self) -> bool:
        return self.tls or urllib.parse.urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port or (8883 if self.use_tls else 1883)


class SimulatorConfig(BaseModel):
    """The built-in SMSC simulator: its listener and its behaviour (`gateway.simulator`)."""

    model_config = _SECTION

    enabled: bool = False
    host: str = "127.0.0.1"
    port: ListenPort = 2776
    # None: any bind is accepted.
    system_id: str | None = None
    password: str | None = None
    message_id_format: Literal["hex", "dec"] = "hex"
    dlr_id_format: Literal["hex", "dec"] = "hex"
    # When a receipt goes out. "timer": `dlr_delay` seconds after the submit, on the next
    # timer tick (0: the next tick). "same-write": right behind its submit_sm_resp, in the same
    # TCP write (as SMSCs that answer fast do). "delayed": like timer, plus a random 0 to
    # `dlr_jitter` seconds each, so receipts come out of submit order. "before-resp": just
    # before its submit_sm_resp, in the same write (some carriers do).
    receipt_mode: Literal["timer", "same-write", "delayed", "before-resp"] = "timer"
    # Seconds between a submit and its receipt in the timer and delayed modes.
    dlr_delay: Annotated[float, Field(ge=0)] = 1.0
    dlr_jitter: Annotated[float, Field(ge=0)] = 0.05
    throttle_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    undeliverable_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Seconds between generated mobile-originated messages; None: none.
    mo_interval: Annotated[float, Field(gt=0)] | None = None
    # Append one line per received submit to this file.
    record_file: FilePath | None = None


class LogConfig(BaseModel):
    """What the daemon logs and how (`gateway.logs`)."""

    model_config = _SECTION

    # "text": one human line per event; "json": one JSON object per line, the message id (and
    # link, account) as fields of their own, for a log shipper.
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ShutdownConfig(BaseModel):
    """What SIGTERM (`systemctl stop`) does before the process ends."""

    model_config = _SECTION

    # After the listeners closed and customers were unbound: how long each link waits for the
    # submit_sm_resp of what it already sent (the rest is sent again after a restart).
    # systemd's TimeoutStopSec must leave room for it (the unit gives 30 s).
    drain_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0


class MetricsConfig(BaseModel):
    """The Prometheus exporter (`gateway.metrics`): `GET /metrics` on the HTTP API's port
    (with the metrics token), and optionally on a listener of its own."""

    model_config = _SECTION

    enabled: bool = True
    # The bearer token `GET /metrics` needs on the HTTP API's port (the admin token is taken
    # too); the daemon creates it, mode 0600, when missing. None: <data_dir>/metrics.token.
    token_file: FilePath | None = None
    # "host:port" of a listener of its own serving /metrics, /healthz and /readyz without a
    # token: its address is the access control (loopback, or a monitoring network).
    listen: str | None = None
    # Latency histograms measured in one place each (commits, submit round trip, the store
    # writer's batches; no mark is kept per message). `stage_times` adds the rest.
    latency: bool = True
    # How often the event loop's lag is measured (a sleep's overshoot).
    loop_lag_interval: Annotated[float, Field(gt=0, le=60)] = 0.5

    @model_validator(mode="after")
    def _listen_is_host_port(self) -> MetricsConfig:
        if self.listen is not None:
            host, _, port = self.listen.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise _KeyedError("metrics.listen", f"{self.listen!r} is not host:port")
        return self

    @property
    def listen_address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ModemSimulatorConfig(BaseModel):
    """GSM modems emulated inside the daemon (`modems.emulator`), each on a pty whose slave
    side is reachable at one of `devices` (a symlink the daemon makes, like a
    /dev/serial/by-id name): a `type = "modem"` link names that path as its device."""

    model_config = _SECTION

    enabled: bool = False
    devices: list[FilePath] = Field(default_factory=list)
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,8}$")] | None = None  # the SIM asks for it
    operator: str = "Tandem Sim"
    # Seconds from +CMGS to the status report, and its TP-Status (0: delivered).
    report_delay: Annotated[float, Field(ge=0)] = 1.0
    report_status: Annotated[int, Field(ge=0, le=255)] = 0
    # Seconds between generated MOs on each modem; None: none.
    mo_interval: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _devices_when_enabled(self) -> ModemSimulatorConfig:
        if self.enabled and not self.devices:
            raise ValueError("an enabled modem simulator needs at least one device path")
        seen: set[Path] = set()
        for index, device in enumerate(self.devices):
            if device in seen:
                raise _KeyedError(f"modem_simulator.devices[{index}]", f"duplicate {device}")
            seen.add(device)
        return self


class KeywordWordsConfig(BaseModel):
    """Words added to a keyword class (`[[keywords.extra]]`): for some senders or sender
    groups only (none named: every sender), in one language, valid between two instants."""

    model_config = _SECTION

    kind: Literal["opt_out", "opt_in", "help"]
    words: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(min_length=1)
    # The language the words are in: the inbound handler replies in it. None: [keywords] language.
    language: str | None = None
    senders: list[str] = Field(default_factory=list)
    sender_groups: list[str] = Field(default_factory=list)
    # TOML date-times; one without an offset is UTC. Valid from `valid_from` (inclusive) until
    # `valid_until` (exclusive); either may be left out.
    valid_from: datetime.datetime | None = None
    valid_until: datetime.datetime | None = None

    @field_validator("words")
    @classmethod
    def _words_have_letters(cls, words: list[str]) -> list[str]:
        from gateway.optouts.keywords import compact

        for word in words:
            if not compact(word):
                raise ValueError(f"{word!r} has no letter or digit")
        return words

    @model_validator(mode="after")
    def _dates_are_ordered(self) -> KeywordWordsConfig:
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and _utc(self.valid_until) <= _utc(self.valid_from)
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


def _utc(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class KeywordsConfig(BaseModel):
    """The MO keywords (`gateway.optouts.keywords`): STOP, START, HELP and the words like them."""

    model_config = _SECTION

    # The default words are the matcher's own (gateway.optouts.keywords.DEFAULT_*).
    opt_out: list[str] = Field(default_factory=lambda: list(keywords.DEFAULT_OPT_OUT))
    opt_in: list[str] = Field(default_factory=lambda: list(keywords.DEFAULT_OPT_IN))
    help: list[str] = Field(default_factory=lambda: list(keywords.DEFAULT_HELP))
    # Opt-out words that stop every sender, not only the one they were sent to.
    all_senders: list[str] = Field(default_factory=lambda: list(keywords.DEFAULT_ALL_SENDERS))
    # The language of the words above.
    language: str = "en"
    # Also take a short message containing an opt-out word ("please stop") as an opt-out; the
    # audit trail says it was matched leniently.
    lenient: bool = False
    lenient_max_words: Annotated[int, Field(ge=1, le=20)] = keywords.DEFAULT_LENIENT_MAX_WORDS
    extra: list[KeywordWordsConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _classes_do_not_share_words(self) -> KeywordsConfig:
        from gateway.optouts.keywords import compact

        seen: dict[str, str] = {}
        for kind in ("opt_out", "opt_in", "help"):
            for word in getattr(self, kind):
                key = compact(word)
                if not key:
                    raise _KeyedError(f"keywords.{kind}", f"{word!r} has no letter or digit")
                if seen.get(key, kind) != kind:
                    raise _KeyedError(f"keywords.{kind}", f"{word!r} is also in {seen[key]}")
                seen[key] = kind
        return self


class SenderGroupConfig(BaseModel):
    """Senders that share opt-outs (`[[sender_groups]]`)."""

    model_config = _SECTION

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    senders: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    # "group": a STOP sent to one member stops every member; "sender": that member only (the
    # group still carries its keywords, and STOPALL still stops everyone).
    optout_scope: Literal["group", "sender"] = "group"


class OptOutsConfig(BaseModel):
    """The opt-out list and its enforcement on every MT (`gateway.optouts`)."""

    model_config = _SECTION

    enabled: bool = True
    # Senders whose OTPs go to numbers that opted out (an account-security code is not
    # marketing); every other sender's OTPs are refused like any message.
    otp_exempt: list[str] = Field(default_factory=list)
    # How often a daemon reads changes other writers made (`tandem optouts`, other daemons).
    sync_seconds: Seconds = 1.0


class RetentionConfig(BaseModel):
    """How long finished rows stay in the store (`gateway.store.retention`). A purge runs
    every `interval_seconds`, in transactions of at most `batch` messages so traffic keeps
    its turn at the writer; `tandem store purge --dry-run` counts what it would delete."""

    model_config = _SECTION

    enabled: bool = True
    # Messages in a final state (delivered, undeliverable, expired, failed, ...) with their
    # segments and history, counted from their last change.
    final_messages_days: Annotated[float, Field(gt=0)] = 90.0
    # Inbound messages (MOs) once delivered to their destination, from when they came.
    inbound_days: Annotated[float, Field(gt=0)] = 30.0
    # Receipts and MOs owed to a customer who never took them, from their last change: given
    # up (the SMPP outbox's delivery_ttl normally settles them long before).
    owed_receipts_days: Annotated[float, Field(gt=0)] = 7.0
    # OTP verifications past their expiry (approved, failed, canceled, expired).
    otp_days: Annotated[float, Field(gt=0)] = 7.0
    # Idempotency answers are kept `[http] idempotency_seconds`, then purged here.
    interval_seconds: Annotated[float, Field(ge=1)] = 300.0
    batch: Annotated[int, Field(ge=1, le=100_000)] = 500


class InboundRouteConfig(BaseModel):
    """Where MOs to some of our numbers go (`[[inbound.routes]]`): matched on the number they
    were sent to (`to`: exact numbers or short codes; `prefix`: number prefixes) and optionally
    their first word (`keyword`, e.g. "JOIN"); sent to an SMPP account, an HTTP webhook and/or
    a named event sink. The most specific route wins: a keyword route before one without, an
    exact number before a prefix, a longer prefix before a shorter one."""

    model_config = _SECTION

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    to: list[Annotated[str, Field(pattern=r"^\+?[0-9]{1,15}$")]] = Field(default_factory=list)
    prefix: list[Annotated[str, Field(pattern=r"^\+?[0-9]{1,15}$")]] = Field(default_factory=list)
    keyword: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    account: str | None = None  # an SMPP account's system_id: MOs go to its receiving binds
    webhook: str | None = None  # an http(s) URL: MOs are POSTed there as JSON, signed
    # The HMAC key of the webhook's X-Tandem-Signature (the receipt callbacks' scheme).
    webhook_secret: str | None = None
    event_sink: str | None = None  # a named event sink (`gateway.events`), e.g. "mqtt"

    @model_validator(mode="after")
    def _matches_and_goes_somewhere(self) -> InboundRouteConfig:
        if not self.to and not self.prefix:
            raise ValueError("give the numbers it matches: to and/or prefix")
        if self.account is None and self.webhook is None and self.event_sink is None:
            raise ValueError("give where MOs go: account, webhook and/or event_sink")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        if self.webhook is not None and not self.webhook_secret:
            raise ValueError("a webhook needs a webhook_secret to sign its requests with")
        return self


class InboundReplyConfig(BaseModel):
    """The reply to an MO that matched a keyword class (`[[inbound.replies]]`), for a sender
    group (none: every sender without a reply of its own) and a language (none: any)."""

    model_config = _SECTION

    kind: Literal["opt_out", "opt_in", "help"]
    text: Annotated[str, Field(min_length=1, max_length=1600)]
    sender_group: str | None = None
    language: str | None = None


class InboundConfig(BaseModel):
    """Inbound messages (MO): reassembly, webhooks, routes, keyword replies. How long MOs are
    kept is `[retention] inbound_days`."""

    model_config = _SECTION

    # Parts of one MO must all arrive within this (seconds since the last part); those whose
    # whole never arrives are delivered as the parts they are.
    reassembly_timeout: Seconds = 10.0
    reassembly_max_pending: Annotated[int, Field(ge=1)] = 10_000  # messages waiting for parts
    reassembly_max_bytes: Annotated[int, Field(ge=1)] = 16 << 20  # their octets
    webhook_timeout: Seconds = 10.0
    webhook_retry_initial: Seconds = 5.0
    webhook_retry_max_delay: Seconds = 1800.0
    webhook_retry_for: Seconds = 86_400.0
    routes: list[InboundRouteConfig] = Field(default_factory=list)
    replies: list[InboundReplyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _route_names_are_unique(self) -> InboundConfig:
        _require_unique("inbound.routes", (route.name for route in self.routes), "name")
        return self


class TandemConfig(BaseModel):
    """The whole daemon configuration: one TOML file, validated once at start-up."""

    model_config = _SECTION

    data_dir: FilePath = Path("data")
    store: StoreConfig = StoreConfig()
    node: NodeConfig = NodeConfig()
    smpp_server: SmppServerConfig = SmppServerConfig()
    http: HttpConfig = HttpConfig()
    otp: OtpConfig = OtpConfig()
    egress: EgressConfig = EgressConfig()
    numbering: NumberingConfig = NumberingConfig()
    routes: RouteList = Field(default_factory=list)
    links: list[LinkConfig] = Field(default_factory=list)
    accounts: list[AccountConfig] = Field(default_factory=list)
    senders: SendersConfig = SendersConfig()
    dlr: DlrConfig = DlrConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    modem_simulator: ModemSimulatorConfig = ModemSimulatorConfig()
    queue: QueueConfig = QueueConfig()
    log: LogConfig = LogConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    retention: RetentionConfig = RetentionConfig()
    # The MQTT event sink; None (no [mqtt] section): no events are published.
    mqtt: MqttConfig | None = None
    keywords: KeywordsConfig = KeywordsConfig()
    sender_groups: list[SenderGroupConfig] = Field(default_factory=list)
    optouts: OptOutsConfig = OptOutsConfig()
    metrics: MetricsConfig = MetricsConfig()
    inbound: InboundConfig = Field(default_factory=InboundConfig)
    # Record per-stage latency histograms (gateway.stages; GET /admin/stages shows them).
    stage_times: bool = False

    @model_validator(mode="after")
    def _names_are_unique(self) -> TandemConfig:
        _require_unique("links", (link.name for link in self.links), "name")
        _require_unique("accounts", (a.system_id for a in self.accounts), "system_id")
        link_names = {link.name for link in self.links}
        for index, route in enumerate(self.routes):
            for target in route.targets:
                if target not in link_names:
                    raise _KeyedError(f"routes[{index}].targets", f"no link is named {target!r}")
        return self

    @model_validator(mode="after")
    def _pinning_needs_a_cluster(self) -> TandemConfig:
        for index, link in enumerate(self.links):
            if link.nodes and self.store.backend != "postgresql":
                raise _KeyedError(
                    f"links[{index}].nodes",
                    'pins the link to cluster nodes, which needs [store] backend = "postgresql" '
                    "(one SQLite node runs every link)",
                )
        return self

    @model_validator(mode="after")
    def _sender_groups_are_disjoint(self) -> TandemConfig:
        from gateway.optouts.senders import sender_key

        _require_unique("sender_groups", (g.name for g in self.sender_groups), "name")
        member_of: dict[str, str] = {}
        for index, group in enumerate(self.sender_groups):
            for sender in group.senders:
                key = sender_key(sender)
                if key in member_of and member_of[key] != group.name:
                    raise _KeyedError(
                        f"sender_groups[{index}].senders",
                        f"{sender!r} is already in group {member_of[key]!r}",
                    )
                member_of[key] = group.name
        names = {g.name for g in self.sender_groups}
        for index, extra in enumerate(self.keywords.extra):
            for name in extra.sender_groups:
                if name not in names:
                    raise _KeyedError(
                        f"keywords.extra[{index}].sender_groups", f"no sender group {name!r}"
                    )
        return self

    @model_validator(mode="after")
    def _inbound_names_exist(self) -> TandemConfig:
        sinks = set(self.event_sink_sections())
        for index, route in enumerate(self.inbound.routes):
            if route.event_sink is not None and route.event_sink not in sinks:
                known = ", ".join(sorted(sinks)) or "none is configured"
                raise _KeyedError(
                    f"inbound.routes[{index}].event_sink",
                    f"no event sink is named {route.event_sink!r} ({known})",
                )
        groups = {group.name for group in self.sender_groups}
        for index, reply in enumerate(self.inbound.replies):
            if reply.sender_group is not None and reply.sender_group not in groups:
                raise _KeyedError(
                    f"inbound.replies[{index}].sender_group",
                    f"no sender group {reply.sender_group!r}",
                )
        return self

    @model_validator(mode="after")
    def _default_sender_is_a_sender(self) -> TandemConfig:
        try:
            check_sender(self.otp.default_sender, self.senders)
        except InvalidSender as exc:
            raise _KeyedError("otp.default_sender", str(exc)) from None
        return self

    def event_sink_sections(self) -> dict[str, MqttConfig]:
        """The event sinks this config turns on, by name: the sections `gateway.events` builds
        them from (a new kind of sink adds its section here) and the names inbound routes may
        send to."""
        if self.mqtt is None or not self.mqtt.enabled:
            return {}
        return {self.mqtt.name: self.mqtt}

    @property
    def store_path(self) -> Path:
        return self.store.path if self.store.path is not None else self.data_dir / "tandem.db"

    @property
    def store_key_path(self) -> Path:
        """The key that seals OTP messages and callback secrets in the store, beside otp.key."""
        return self.data_dir / "store.key"

    def link(self, name: str) -> LinkConfig:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def link_dlr_timeout(self, link: LinkConfig) -> float:
        return link.dlr_timeout if link.dlr_timeout is not None else self.dlr.dlr_timeout


def _require_unique(section: str, names: Iterable[str], key: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise _KeyedError(f"{section}[{index}].{key}", f"duplicate {key} {name!r}")
        seen.add(name)


class _KeyedError(ValueError):
    """A cross-section check that knows the exact key; carried out of pydantic intact."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def default_config_text() -> str:
    """The built-in default configuration (`gateway/default.toml`), as TOML text."""
    return resources.files("gateway").joinpath("default.toml").read_text(encoding="utf-8")


def parse_config(text: str, source: str) -> TandemConfig:
    """Validate TOML text into a `TandemConfig`; `source` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(source, exc) from None
    try:
        return TandemConfig.model_validate(document)
    except ValidationError as exc:
        raise _validation_error(source, exc) from None


def load_config(path: str | Path | None = None) -> TandemConfig:
    """Read and validate the config file at `path`, or the built-in default when None."""
    if path is None:
        return parse_config(default_config_text(), BUILTIN_SOURCE)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "cannot read: not UTF-8 text") from None
    return parse_config(text, source)


def _syntax_error(source: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    # tomllib puts the position at the end of the message: "Invalid value (at line 3, column 9)".
    message = str(exc)
    position = ""
    if message.endswith(")") and " (at " in message:
        message, _, tail = message.rpartition(" (at ")
        position = tail.rstrip(")")
    reason = f"invalid TOML: {_lower_first(message)}"
    return ConfigError(source, position, reason)


def _validation_error(source: str, exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    keyed = _find_keyed_error(first)
    if keyed is not None:
        key, reason = keyed.key, keyed.reason
    else:
        key, reason = _format_location(first["loc"]), validation_reason(first)
    if len(errors) > 1:
        others = ", ".join(_format_location(e["loc"]) or "(top level)" for e in errors[1:4])
        more = "" if len(errors) <= 4 else ", ..."
        reason = f"{reason} (and {len(errors) - 1} more: {others}{more})"
    return ConfigError(source, key or "(top level)", reason)


def _find_keyed_error(error: Any) -> _KeyedError | None:
    cause = error.get("ctx", {}).get("error")
    return cause if isinstance(cause, _KeyedError) else None


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # A discriminated union reports the tag as a path step (links[0].smpp.window): drop it.
    if (
        len(parts) >= 3
        and parts[0] == "links"
        and isinstance(parts[1], int)
        and parts[2] in LINK_TYPES
    ):
        del parts[2]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_REASON_BY_TYPE = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "union_tag_not_found": "missing key 'type'",
    "path_type": "must be a path string",
}


def validation_reason(error: Any) -> str:
    kind = error["type"]
    if kind in _REASON_BY_TYPE:
        return _REASON_BY_TYPE[kind]
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r} (expected one of: {', '.join(LINK_TYPES)})"
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    for prefix, replacement in (
        ("Input should be ", "must be "),
        ("String should ", "must "),
        ("List should ", "must "),
        ("Dictionary should ", "must "),
        ("Value should ", "must "),
    ):
        if message.startswith(prefix):
            message = replacement + message.removeprefix(prefix)
            break
    if kind.endswith(("_type", "_parsing")) or kind in ("literal_error", "enum"):
        given = repr(error.get("input"))
        message = f"{message}, got {given if len(given) <= 40 else given[:37] + '...'}"
    return _lower_first(message)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text
