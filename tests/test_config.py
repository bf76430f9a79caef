"""The config model: the default loads, and every bad file stops with file, key and reason."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import (
    BUILTIN_SOURCE,
    ConfigError,
    ModemLinkConfig,
    SmppLinkConfig,
    TandemConfig,
    default_config_text,
    load_config,
    parse_config,
)

LINK = """
[[links]]
type = "smpp"
name = "carrier-a"
host = "smpp.example.net"
system_id = "acme"
"""


def write(tmp_path: Path, text: str, name: str = "tandem.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert "\n" not in str(caught.value)
    return caught.value


def test_builtin_default_loads_with_the_simulator_and_a_link_to_it() -> None:
    config = load_config(None)
    assert isinstance(config, TandemConfig)
    assert config.simulator.enabled
    link, modem = config.links
    assert isinstance(link, SmppLinkConfig)
    assert (link.host, link.port) == (config.simulator.host, config.simulator.port)
    # ... and an emulated GSM modem with a modem link on it, routed for +254.
    assert isinstance(modem, ModemLinkConfig) and config.modem_simulator.enabled
    assert [Path(modem.device)] == config.modem_simulator.devices
    [kenya] = [route for route in config.routes if route.targets == ["modem"]]
    assert kenya.prefixes == ["+254"]
    assert config.store_path == config.data_dir / "tandem.db"
    assert config.smpp_server.port == 2775
    assert config.http.host == "127.0.0.1"


def test_default_text_is_the_packaged_file_and_parses_identically() -> None:
    assert parse_config(default_config_text(), BUILTIN_SOURCE) == load_config(None)


def test_empty_file_gives_every_section_its_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.links == []
    assert config.store.synchronous == "NORMAL"
    assert not config.simulator.enabled


def test_a_full_file_is_read_into_typed_sections(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            data_dir = "/var/lib/tandem"
            [store]
            synchronous = "FULL"
            [dlr]
            dlr_timeout = 3600
            [[accounts]]
            system_id = "shop"
            password_hash = "$argon2id$v=19$m=65536,t=3,p=4$abc$def"
            [[links]]
            type = "smpp"
            name = "carrier-a"
            host = "smpp.example.net"
            system_id = "acme"
            password = "12345678"
            sessions = 3
            window = 20
            tps = 150
            concatenation = "sar"
            submit_id_format = "hex"
            dlr_id_format = "dec"
            tls = true
            tls_ca_file = "/etc/ssl/carrier.pem"
            """,
        )
    )
    assert config.store_path == Path("/var/lib/tandem/tandem.db")
    assert config.store.synchronous == "FULL"
    link = config.link("carrier-a")
    assert (link.sessions, link.window, link.tps) == (3, 20, 150.0)
    assert link.tls_ca_file == Path("/etc/ssl/carrier.pem")
    assert config.link_dlr_timeout(link) == 3600.0
    assert config.accounts[0].system_id == "shop"


def test_wrong_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    error = error_for(tmp_path, LINK + 'window = "ten"\n')
    assert error.key == "links[0].window"
    assert "valid integer" in error.reason and "'ten'" in error.reason


def test_numbers_in_strings_are_not_coerced(tmp_path: Path) -> None:
    error = error_for(tmp_path, '[http]\nport = "8080"\n')
    assert error.key == "http.port"


def test_out_of_range_value_reads_like_the_issue_example(tmp_path: Path) -> None:
    path = write(tmp_path, LINK + "window = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: links[0].window: must be greater than 0"


def test_unknown_key_is_an_error_at_every_level(tmp_path: Path) -> None:
    assert error_for(tmp_path, LINK + "windw = 3\n").key == "links[0].windw"
    assert error_for(tmp_path, "[store]\nsynchronus = 'FULL'\n").key == "store.synchronus"
    top = error_for(tmp_path, "datadir = 'x'\n")
    assert (top.key, top.reason) == ("datadir", "unknown key")


def test_missing_required_key(tmp_path: Path) -> None:
    error = error_for(tmp_path, '[[links]]\ntype = "smpp"\nname = "a"\nsystem_id = "x"\n')
    assert (error.key, error.reason) == ("links[0].host", "required key is missing")


def test_link_without_type_or_with_unknown_type(tmp_path: Path) -> None:
    assert error_for(tmp_path, '[[links]]\nname = "a"\n').reason == "missing key 'type'"
    unknown = error_for(tmp_path, '[[links]]\ntype = "gsm"\nname = "a"\n')
    assert unknown.key == "links[0]"
    assert unknown.reason == "unknown type 'gsm' (expected one of: smpp, modem)"


MODEM = """
[[links]]
type = "modem"
name = "sim-1"
device = "/dev/serial/by-id/usb-Quectel_EC25-if02-port0"
"""


def test_a_modem_link_loads_with_every_key(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            LINK
            + MODEM
            + """
            baud = 9600
            pin = "1234"
            smsc = "+447785016005"
            init_commands = ["AT+CSCS=\\"GSM\\"", "AT^CURC=0"]
            messages_per_minute = 6.0
            daily_cap = 200
            cap_time_zone = "Africa/Nairobi"
            status_reports = false
            storage = "ME"
            poll_interval = 60.0
            reset_command = "AT+CFUN=1,1"
            concatenation = "udh16"
            """,
        )
    )
    modem = config.link("sim-1")
    assert isinstance(modem, ModemLinkConfig) and isinstance(
        config.link("carrier-a"), SmppLinkConfig
    )
    assert (modem.baud, modem.pin, modem.daily_cap, modem.storage) == (9600, "1234", 200, "ME")
    assert modem.init_commands == ['AT+CSCS="GSM"', "AT^CURC=0"]


@pytest.mark.parametrize(
    "device", ["rfc2217://modems.lan:4001", "socket://127.0.0.1:7000", "/dev/ttyUSB0"]
)
def test_modem_devices_are_paths_or_network_modem_urls(tmp_path: Path, device: str) -> None:
    text = MODEM.replace("/dev/serial/by-id/usb-Quectel_EC25-if02-port0", device)
    assert load_config(write(tmp_path, text)).links[0].device == device  # type: ignore[union-attr]


def test_check_config_names_the_wrong_key_of_either_kind_of_link(tmp_path: Path) -> None:
    # A key of the other kind is an unknown key, named with its index, not the tag.
    assert error_for(tmp_path, MODEM + "window = 10\n").key == "links[0].window"
    assert error_for(tmp_path, LINK + 'device = "/dev/ttyUSB0"\n').key == "links[0].device"
    assert error_for(tmp_path, LINK + MODEM + "baud = 115201\n").key == "links[1].baud"
    pin = error_for(tmp_path, MODEM + 'pin = "12a4"\n')
    assert pin.key == "links[0].pin"
    url = error_for(tmp_path, MODEM.replace("/dev/serial", "http://x/dev/serial"))
    assert url.key == "links[0].device" and "rfc2217://host:port" in url.reason
    port = error_for(tmp_path, MODEM.replace("/dev/serial/by-id/", "socket://modems.lan/"))
    assert port.key == "links[0].device" and "host:port" in port.reason
    sar = error_for(tmp_path, MODEM + 'concatenation = "sar"\n')
    assert sar.key == "links[0].concatenation" and "udh8 or udh16" in sar.reason
    zone = error_for(tmp_path, MODEM + 'cap_time_zone = "Mars/Olympus"\n')
    assert zone.key == "links[0].cap_time_zone"
    missing = error_for(tmp_path, '[[links]]\ntype = "modem"\nname = "a"\n')
    assert (missing.key, missing.reason) == ("links[0].device", "required key is missing")


def test_bad_toml_syntax_gives_the_line_number(tmp_path: Path) -> None:
    error = error_for(tmp_path, "[http]\nhost = '127.0.0.1'\nport = \n")
    assert error.key.startswith("line 3")
    assert error.reason.startswith("invalid TOML")


def test_password_longer_than_smpp_allows(tmp_path: Path) -> None:
    error = error_for(tmp_path, LINK + 'password = "123456789"\n')
    assert error.key == "links[0].password" and "8" in error.reason


def test_duplicate_link_names_point_at_the_second(tmp_path: Path) -> None:
    error = error_for(tmp_path, LINK + LINK)
    assert error.key == "links[1].name" and "carrier-a" in error.reason


def test_cross_field_rules(tmp_path: Path) -> None:
    backoff = error_for(tmp_path, LINK + "reconnect_initial = 10\nreconnect_max = 5\n")
    assert backoff.key == "links[0]" and "reconnect_max" in backoff.reason
    tls = error_for(tmp_path, "[smpp_server]\ntls_port = 3550\n")
    assert tls.key == "smpp_server" and "tls_cert_file" in tls.reason


def test_several_errors_stay_on_one_line_and_are_counted(tmp_path: Path) -> None:
    error = error_for(tmp_path, LINK + "window = 0\nsessions = 0\n[http]\nport = -1\n")
    reported = [error.key, *error.reason.split("(and 2 more: ")[1].rstrip(")").split(", ")]
    assert sorted(reported) == ["http.port", "links[0].sessions", "links[0].window"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert "cannot read" in str(caught.value)


def test_check_config_exit_codes_and_one_line_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, LINK, "good.toml")
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out

    bad = write(tmp_path, LINK + "window = 0\n", "bad.toml")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"tandem: {bad}: links[0].window: must be greater than 0\n"


def test_run_with_a_bad_config_stops_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "[[links]]\n", "bad.toml")
    assert main(["run", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"tandem: {bad}: links[0]")


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "[http\nport = 1\n", "broken.toml")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tandem: {bad}: line 1")
    assert "Traceback" not in result.stderr


def test_routes_and_numbering_are_routings_models_and_targets_must_be_links(
    tmp_path: Path,
) -> None:
    route = '[[routes]]\nname = "uk"\npriority = 10\nprefixes = ["44"]\ntargets = ["carrier-a"]\n'
    config = load_config(write(tmp_path, LINK + route + '[numbering]\ndefault_region = "gb"\n'))
    assert config.routes[0].prefixes == ["+44"]
    assert config.numbering.default_region == "GB"

    dangling = error_for(tmp_path, route)
    assert (dangling.key, dangling.reason) == ("routes[0].targets", "no link is named 'carrier-a'")
    assert error_for(tmp_path, LINK + route + route).key == "routes"


def test_concatenation_is_segmentations_enum(tmp_path: Path) -> None:
    from smpp.segmentation import Concatenation

    assert (
        load_config(write(tmp_path, LINK + 'concatenation = "sar"\n')).links[0].concatenation
        is Concatenation.SAR
    )
    error = error_for(tmp_path, LINK + 'concatenation = "udh7"\n')
    assert error.key == "links[0].concatenation" and "'udh7'" in error.reason


def test_a_postgresql_store_needs_a_dsn_and_a_plain_schema_name(tmp_path: Path) -> None:
    missing = error_for(tmp_path, '[store]\nbackend = "postgresql"\n')
    assert missing.key == "store.dsn"
    bad_schema = error_for(
        tmp_path,
        '[store]\nbackend = "postgresql"\ndsn = "postgresql://db/t"\ndatabase_schema = "x; drop"\n',
    )
    assert "database_schema" in bad_schema.key
    config = load_config(
        write(
            tmp_path,
            '[store]\nbackend = "postgresql"\ndsn = "postgresql://db/t"\n[node]\nname = "n-1"\n',
        )
    )
    assert (config.store.backend, config.store.dsn, config.node.name) == (
        "postgresql",
        "postgresql://db/t",
        "n-1",
    )
