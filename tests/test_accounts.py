"""Customer accounts: password rules, the account book and its file, tps buckets, the failed-bind
guard and `tandem accounts`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.accounts import (
    MAX_PASSWORD_LENGTH,
    Account,
    AccountBook,
    BindGuard,
    PasswordTooLong,
    TokenBucket,
    hash_password,
    load_accounts_file,
    save_accounts_file,
    verify_password,
)
from gateway.cli import main as tandem
from gateway.config import AccountConfig

HASH = hash_password("secret1")


def config(system_id: str, **fields: object) -> AccountConfig:
    return AccountConfig.model_validate({"system_id": system_id, "password_hash": HASH, **fields})


def test_password_hash_verifies_only_the_same_password() -> None:
    assert HASH.startswith("$argon2id$")
    assert verify_password(HASH, "secret1")
    assert not verify_password(HASH, "secret2")
    assert not verify_password("not a hash", "secret1")


def test_passwords_longer_than_smpp_allows_are_refused_and_never_match() -> None:
    with pytest.raises(PasswordTooLong):
        hash_password("x" * (MAX_PASSWORD_LENGTH + 1))
    with pytest.raises(ValueError):
        hash_password("")
    # A 9th character could never arrive over SMPP, so it must not be accepted either.
    assert not verify_password(HASH, "secret1" + "xx")


def test_config_refuses_plain_passwords_bad_networks_and_bad_sender_patterns() -> None:
    with pytest.raises(ValidationError):
        AccountConfig.model_validate({"system_id": "a", "password_hash": "secret1"})
    with pytest.raises(ValidationError, match="not a network"):
        config("a", allowed_networks=["10.0.0.300/8"])
    with pytest.raises(ValidationError, match="allowed_senders"):
        config("a", allowed_senders=["(unclosed"])
    with pytest.raises(ValidationError):
        config("a", bind_types=["outbind"])


def test_account_allows_addresses_in_its_networks_including_ipv4_mapped_ipv6() -> None:
    account = Account.compile(config("a", allowed_networks=["10.1.0.0/16", "2001:db8::/32"]))
    assert account.allows_address("10.1.2.3")
    assert account.allows_address("::ffff:10.1.2.3")
    assert account.allows_address("2001:db8::1")
    assert not account.allows_address("10.2.0.1")
    assert not account.allows_address("not an address")


def test_sender_patterns_must_match_the_whole_sender() -> None:
    account = Account.compile(config("a", allowed_senders=[r"Shop", r"4477\d{8}"]))
    assert account.allows_sender("Shop")
    assert account.allows_sender("447700900123")
    assert not account.allows_sender("Shopping")
    assert Account.compile(config("b")).allows_sender("anything")


def test_account_book_merges_config_and_file_and_the_config_wins(tmp_path: Path) -> None:
    file = tmp_path / "accounts.toml"
    save_accounts_file(file, [config("alice", tps=5.0), config("bob", mo_numbers=["+12345"])])
    book = AccountBook([config("alice", tps=50.0)], file)
    alice, bob = book.get("alice"), book.get("bob")
    assert alice is not None and alice.config.tps == 50.0
    assert bob is not None
    assert book.owner_of("12345") is bob
    assert book.owner_of("+12345") is bob
    assert book.owner_of("54321") is None


def test_account_book_reloads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    file = tmp_path / "accounts.toml"
    book = AccountBook([], file)
    assert len(book) == 0 and not book.reload_if_changed()
    save_accounts_file(file, [config("carol")])
    assert book.reload_if_changed()
    assert book.get("carol") is not None
    assert not book.reload_if_changed()  # unchanged: not re-read
    file.write_text("[[accounts]]\nsystem_id = 1\n")
    os.utime(file, ns=(1, 1))
    assert book.reload_if_changed()
    assert book.load_error is not None and "system_id" in book.load_error
    assert book.get("carol") is not None


def test_disabled_accounts_own_no_mo_numbers(tmp_path: Path) -> None:
    book = AccountBook([config("off", enabled=False, mo_numbers=["777"])], None)
    assert book.get("off") is not None
    assert book.owner_of("777") is None


def test_accounts_file_round_trips_every_field(tmp_path: Path) -> None:
    original = config(
        "dave",
        tps=12.5,
        window=7,
        bind_types=["receiver"],
        allowed_networks=["192.0.2.0/24"],
        allowed_senders=[r'Quote"d\\d'],
        mo_numbers=["12345"],
        multipart="reassemble",
        default_kind="otp",
    )
    file = tmp_path / "accounts.toml"
    save_accounts_file(file, [original])
    assert load_accounts_file(file) == [original]
    assert file.stat().st_mode & 0o777 == 0o600  # password hashes are not for everyone


def test_token_bucket_allows_its_rate_with_a_burst_and_refuses_above() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0, updated=0.0)
    assert bucket.take(10, 0.0)
    assert not bucket.take(1, 0.0)
    assert not bucket.take(2, 0.1)  # one token came back in 0.1 s
    assert bucket.take(1, 0.1)
    assert bucket.take(10, 5.0)  # refilled, but never beyond the burst
    assert not bucket.take(1, 5.0)


def test_bind_guard_delays_grow_then_the_address_is_banned_and_forgiven_later() -> None:
    guard = BindGuard(free_failures=2, base_delay=1.0, max_delay=3.0, ban_after=5, ban_seconds=60)
    delays = [guard.failed("192.0.2.1", "acme", float(t)) for t in range(5)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert guard.banned("192.0.2.1", "acme", 10.0)
    assert not guard.banned("192.0.2.2", "acme", 10.0)  # other addresses are not affected
    assert not guard.banned("192.0.2.1", "acme", 65.0)
    assert guard.stats.bans == 1 and guard.stats.failures == 5


def test_bind_guard_forgets_quiet_addresses_and_successful_ones() -> None:
    guard = BindGuard(free_failures=0, base_delay=1.0, forget_after=100)
    assert guard.failed("a", "acme", 0.0) == 1.0
    assert guard.failed("a", "acme", 50.0) == 2.0
    assert guard.failed("a", "acme", 200.0) == 1.0  # quiet for 150 s: a fresh start
    guard.succeeded("a", "acme")
    assert guard.failed("a", "acme", 201.0) == 1.0


def write_config(tmp_path: Path, accounts: str = "") -> Path:
    path = tmp_path / "tandem.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n{accounts}')
    return path


def test_cli_add_list_passwd_disable_and_remove_edit_the_accounts_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_config(tmp_path))
    assert tandem(["accounts", "-c", path, "add", "erin", "--password", "pw1", "--tps", "20",
                   "--mo-number", "4321", "--bind-type", "transceiver",
                   "--route-tag", "premium", "--source-ton-npi", "check"]) == 0  # fmt: skip
    file = tmp_path / "data" / "accounts.toml"
    (erin,) = load_accounts_file(file)
    assert (erin.tps, erin.mo_numbers, erin.bind_types) == (20.0, ["4321"], ["transceiver"])
    assert erin.route_tags == ["premium"]
    assert erin.source_ton_npi == "check"
    assert verify_password(erin.password_hash, "pw1")

    assert tandem(["accounts", "-c", path, "add", "erin", "--password", "pw1"]) == 2
    assert "exists already" in capsys.readouterr().err

    assert tandem(["accounts", "-c", path, "passwd", "erin", "--password", "pw2"]) == 0
    (erin,) = load_accounts_file(file)
    assert verify_password(erin.password_hash, "pw2")
    assert not verify_password(erin.password_hash, "pw1")

    assert tandem(["accounts", "-c", path, "passwd", "erin", "--password", "123456789"]) == 2
    assert "at most 8" in capsys.readouterr().err

    assert tandem(["accounts", "-c", path, "disable", "erin"]) == 0
    assert not load_accounts_file(file)[0].enabled

    capsys.readouterr()
    assert tandem(["accounts", "-c", path, "list"]) == 0
    listing = capsys.readouterr().out
    assert "erin" in listing and "disabled" in listing and "tps=20" in listing

    assert tandem(["accounts", "-c", path, "remove", "erin"]) == 0
    assert load_accounts_file(file) == []
    assert tandem(["accounts", "-c", path, "remove", "erin"]) == 2


def test_cli_leaves_accounts_of_the_config_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = f'[[accounts]]\nsystem_id = "fixed"\npassword_hash = "{HASH}"\n'
    path = str(write_config(tmp_path, entry))
    assert tandem(["accounts", "-c", path, "passwd", "fixed", "--password", "x"]) == 2
    assert "edit it there" in capsys.readouterr().err
    assert tandem(["accounts", "-c", path, "add", "fixed", "--password", "x"]) == 2
