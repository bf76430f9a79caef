"""API keys: minted once, stored hashed, checked by scope/sender/country, revoked by the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.keys import InvalidKeySettings, KeyRing, hash_key, mint_key
from gateway.store.sqlite import SqliteMessageStore


def test_a_minted_key_is_stored_as_its_sha256_only() -> None:
    minted = mint_key("acme", now=1.0)
    assert minted.secret.startswith("tdm_") and len(minted.secret) > 40
    assert minted.record.key_hash == hashlib.sha256(minted.secret.encode()).hexdigest()
    assert minted.secret not in repr(minted.record)
    assert minted.secret.startswith(minted.record.prefix)
    assert minted.record.scopes == ("messages", "otp")
    assert mint_key("acme", now=1.0).secret != minted.secret


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"scopes": ["messages", "admin"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"senders": "(unclosed"}, "senders"),
        ({"countries": ["GBR"]}, "countries"),
        ({"requests_per_second": 0}, "rps"),
        ({"callback_url": "mailto:x@example.com"}, "callback-url"),
    ],
)
def test_invalid_key_settings_are_refused_with_a_reason(settings: dict, reason: str) -> None:
    with pytest.raises(InvalidKeySettings, match=reason):
        mint_key("acme", now=1.0, **settings)
    with pytest.raises(InvalidKeySettings, match="name"):
        mint_key("no spaces", now=1.0)


async def test_the_ring_sees_a_revocation_once_its_cache_ages(tmp_path: Path) -> None:
    store = SqliteMessageStore(tmp_path / "t.db")
    await store.open()
    try:
        minted = mint_key("acme", now=1.0, senders="Acme.*", countries=["gb"])
        await store.save_api_key(minted.record)
        now = [0.0]
        ring = KeyRing(
            store,
            default_requests_per_second=7,
            default_messages_per_second=9,
            cache_seconds=5,
            clock=lambda: now[0],
        )
        key = await ring.authenticate(minted.secret)
        assert key is not None and key.name == "acme"
        assert (key.requests_per_second, key.messages_per_second) == (7, 9)
        assert key.allows_sender("AcmeBank") and not key.allows_sender("xAcme")
        assert key.allows_country("GB") and not key.allows_country("DE")
        assert not key.allows_country(None)
        assert await ring.authenticate(minted.secret + "x") is None
        assert await store.revoke_api_key("acme", at=2.0)
        assert not await store.revoke_api_key("acme", at=3.0)  # already revoked
        now[0] = 4.9
        assert await ring.authenticate(minted.secret) is not None  # cached
        now[0] = 5.1
        assert await ring.authenticate(minted.secret) is None
    finally:
        await store.close()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tandem.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def test_cli_creates_lists_and_revokes_keys_and_never_stores_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    assert (
        main(
            [
                "keys",
                "create",
                "-c",
                config,
                "--name",
                "shop",
                "--scopes",
                "messages,otp,optouts",
                "--senders",
                "Shop.*",
                "--countries",
                "GB,DE",
                "--rps",
                "20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    secret = out.split("key:", 1)[1].split()[0]
    key_id = out.split("id:", 1)[1].split()[0]
    assert secret.startswith("tdm_")
    database = (tmp_path / "data" / "tandem.db").read_bytes()
    assert secret.encode() not in database
    assert hash_key(secret).encode() in database

    assert main(["keys", "create", "-c", config, "--name", "shop"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "create", "-c", config, "--name", "x", "--scopes", "root"]) == 2
    assert "scopes" in capsys.readouterr().err

    assert main(["keys", "list", "-c", config]) == 0
    listing = capsys.readouterr().out
    assert "shop" in listing and key_id in listing and secret not in listing
    assert main(["keys", "revoke", "-c", config, key_id]) == 0
    assert main(["keys", "revoke", "-c", config, "shop"]) == 1
    assert main(["keys", "list", "-c", config]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if "shop" in line]
    assert row.rstrip().split()[-1] != "-"  # the revocation time is shown
