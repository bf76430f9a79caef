"""`tandem route explain`: the number, its operator and who decided it, every rule tried, the
route chosen, and its targets with the live state of the running daemon (or a plain statement
that no daemon answered)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.cli import main
from gateway.config import load_config
from gateway.http.admin_token import admin_token_path, read_admin_token
from gateway.links import LinkState
from tests.daemon_processes import free_port
from tests.waiting import wait_for

DATA = Path(__file__).parent / "data" / "routing"

ROUTES = """
[[routes]]
name = "fr-bulk"
priority = 1
countries = ["FR"]
targets = ["primary"]

[[routes]]
name = "ninety-otp"
priority = 2
mnos = ["Ninety Mobile"]
kinds = ["otp"]
strategy = "failover"
targets = ["dead", "primary"]

[[routes]]
name = "default"
priority = 9
targets = ["primary"]
"""


def write_config(tmp_path: Path, http_port: int, smsc_port: int, dead_port: int) -> Path:
    links = "".join(
        f"""
[[links]]
type = "smpp"
name = "{name}"
host = "127.0.0.1"
port = {port}
system_id = "tandem"
password = "secret"
reconnect_initial = 0.05
reconnect_max = 0.2
"""
        for name, port in (("primary", smsc_port), ("dead", dead_port))
    )
    path = tmp_path / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
port = {http_port}
[simulator]
enabled = true
port = {smsc_port}
dlr_delay = 0.0
[numbering]
default_region = "GB"
prefix_file = "{DATA / "prefixes.csv"}"
mnp_file = "{DATA / "ported.csv"}"
{links}
{ROUTES}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path, free_port(), free_port(), free_port())


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["route", "explain", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_without_a_daemon_shows_operator_source_rules_and_says_live_state_is_unknown(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(
        capsys, "07911 123456", "--from", "MyBank", "--kind", "otp", "--config", str(config_file)
    )
    assert code == 0
    assert "number:       +447911123456" in out
    assert "mno:          Ninety Mobile (decided by ported" in out
    assert "[   1] fr-bulk: no: country" in out
    assert "[   2] ninety-otp: MATCH" in out
    assert "default" not in out  # rules after the match are not tried
    assert "route:        ninety-otp (failover)" in out
    assert "dead: unknown" in out and "primary: unknown" in out
    assert "daemon not running: live state unknown" in out
    assert "if all up:    next target would be dead" in out


def test_explain_uses_the_prefix_table_and_the_kind_to_pick_another_route(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(capsys, "+447400123456", "--config", str(config_file))
    assert code == 0
    assert "mno:          UK Mobile (decided by prefix_table, prefix +447)" in out
    assert "[   2] ninety-otp: no: mno" in out
    assert "route:        default (failover)" in out


def test_explain_json_carries_the_explanation_and_the_live_state_question(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(
        capsys, "+447911123456", "--kind", "otp", "--json", "--config", str(config_file)
    )
    document = json.loads(out)
    assert code == 0
    assert document["number"] == "+447911123456"
    assert document["mno_source"] == "ported"
    assert document["chosen_route"] == "ninety-otp"
    assert [rule["route"] for rule in document["rules"]] == ["fr-bulk", "ninety-otp"]
    assert [t["link"] for t in document["targets"]] == ["dead", "primary"]
    assert document["live_state"]["known"] is False
    assert document["live_state"]["next_target_if_all_links_up"] == "dead"


def test_an_invalid_number_is_explained_and_exits_1(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(capsys, "+44 12", "--config", str(config_file))
    assert code == 1
    assert "refused:" in out


def test_a_broken_operator_table_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, free_port(), free_port(), free_port())
    broken = tmp_path / "broken.csv"
    broken.write_text("prefix,mno,country\n+44x,Nobody,GB\n", encoding="utf-8")
    config.write_text(
        config.read_text().replace(str(DATA / "prefixes.csv"), str(broken)), encoding="utf-8"
    )
    code, out, err = explain(capsys, "+447911123456", "--config", str(config))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "broken.csv" in err


async def test_explain_shows_the_running_daemons_link_states_and_the_target_it_would_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    http_port = free_port()
    config_file = write_config(tmp_path, http_port, free_port(), free_port())
    gateway = Gateway(load_config(config_file))
    await gateway.start()
    try:
        link = gateway.links["primary"]
        await wait_for(lambda: link.state is LinkState.UP, "the simulator link to come up")
        token = read_admin_token(admin_token_path(gateway.config))
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{http_port}/admin/links",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            states = {link["name"]: link["state"] for link in (await response.json())["links"]}
        assert response.status == 200  # the admin token, not an API key
        assert states["primary"] == "up" and states["dead"] != "up"

        code = await asyncio.to_thread(
            main,
            ["route", "explain", "+447911123456", "--kind", "otp", "-c", str(config_file)],
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "dead: down, throttle 0.00, weight 1, skipped" in out
        assert "primary: up, throttle 0.00, weight 1, usable" in out
        assert "next target:  primary" in out
        assert f"live state:   from the daemon at http://127.0.0.1:{http_port}" in out
    finally:
        await gateway.stop()


def test_explain_takes_the_route_tags_a_message_would_carry(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = '\n[[routes]]\nname = "gold"\npriority = 0\ntags = ["gold"]\ntargets = ["primary"]\n'
    config_file.write_text(config_file.read_text(encoding="utf-8") + gold, encoding="utf-8")

    code, out, _ = explain(capsys, "+447400123456", "--config", str(config_file))
    assert code == 0
    assert "[   0] gold: no: tags: none of [] is in ['gold']" in out
    assert "route:        default (failover)" in out

    code, out, _ = explain(capsys, "+447400123456", "--tag", "gold", "--config", str(config_file))
    assert code == 0
    assert "tags: gold" in out
    assert "[   0] gold: MATCH" in out
    assert "route:        gold (failover)" in out
