"""Mosquitto password hashes and ACLs generated from trucks."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ingest import credentials
from ingest.credentials import Account


def test_hash_is_mosquitto_pbkdf2_sha512_format() -> None:
    salt = b"0123456789ab"
    text = credentials.mosquitto_hash("s3cret", salt=salt)
    _, kind, iterations, salt_b64, digest_b64 = text.split("$")
    assert (kind, int(iterations)) == ("7", credentials.PBKDF2_ITERATIONS)
    assert base64.b64decode(salt_b64) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, credentials.PBKDF2_ITERATIONS)
    assert base64.b64decode(digest_b64) == expected
    assert credentials.mosquitto_hash("s3cret") != credentials.mosquitto_hash("s3cret")  # salted


def test_accounts_keep_existing_passwords_and_skip_unusable_ids() -> None:
    existing = {"GPS-1": Account("GPS-1", "terminal", "kept", "T1")}
    accounts, problems = credentials.plan_accounts(
        [("T1", "GPS-1"), ("T2", "GPS-2"), ("T3", "bad/id")],
        existing,
        ingestor=("ingest", "from-url"),
        gateway=None,
    )
    by_name = {a.username: a for a in accounts}
    assert by_name["GPS-1"].password == "kept"
    assert len(by_name["GPS-2"].password) >= 20
    assert by_name["ingest"] == Account("ingest", "ingestor", "from-url")
    assert "bad/id" not in by_name and len(problems) == 1 and "T3" in problems[0]


def test_acl_limits_terminals_to_their_own_topics() -> None:
    text = credentials.acl_text(
        [
            Account("ingest", "ingestor", "x"),
            Account("gw", "gateway", "y"),
            Account("GPS-1", "terminal", "z"),
        ]
    )
    assert "user ingest\ntopic read clearday/v1/trucks/#" in text
    assert "user gw\ntopic write clearday/v1/trucks/#" in text
    assert "pattern write clearday/v1/trucks/%u/positions" in text
    assert "GPS-1" not in text  # terminals are covered by the pattern lines


def test_files_are_private(tmp_path: Path) -> None:
    paths = credentials.write_files(tmp_path / "auth", [Account("GPS-1", "terminal", "pw", "T1")])
    for path in paths.values():
        assert path.stat().st_mode & 0o077 == 0
    assert credentials.read_existing(paths["credentials"])["GPS-1"].password == "pw"


def test_mosquitto_passwd_tool_accepts_our_file(tmp_path: Path) -> None:
    """mosquitto_passwd can read and rewrite the file (same format as its own)."""
    paths = credentials.write_files(tmp_path, [Account("GPS-1", "terminal", "pw", "T1")])
    done = subprocess.run(
        ["mosquitto_passwd", "-b", str(paths["passwd"]), "other", "pw2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert paths["passwd"].read_text().count("$7$") == 2


def test_each_ingestor_instance_gets_an_account_of_its_own() -> None:
    """--ingestors 2: ingest-1 and ingest-2 with the one ingestor password, both readers;
    a terminal may not take either name."""
    accounts, problems = credentials.plan_accounts(
        [("T1", "GPS-1"), ("T2", "ingest-2")],
        {},
        ingestor=("ingest", "from-url"),
        gateway=None,
        ingestors=2,
    )
    ingestors = [a for a in accounts if a.role == "ingestor"]
    assert [(a.username, a.password) for a in ingestors] == [
        ("ingest-1", "from-url"),
        ("ingest-2", "from-url"),
    ]
    assert "clashes with a service account" in problems[0]
    text = credentials.acl_text(accounts)
    assert "user ingest-1\ntopic read clearday/v1/trucks/#" in text
    assert "user ingest-2\ntopic read clearday/v1/trucks/#" in text
    assert credentials.instance_names("ingest", 1) == ["ingest"]


def test_each_gateway_instance_gets_an_account_that_may_write_for_every_truck() -> None:
    """--gateway-user jt808 --gateways 2: jt808-1 and jt808-2 share one password (kept
    on the next run), may write every truck's topics and read none; a terminal may not
    take either name."""
    first, problems = credentials.plan_accounts(
        [("T1", "GPS-1"), ("T2", "jt808-1")],
        {},
        ingestor=("ingest", "p"),
        gateway="jt808",
        gateways=2,
    )
    gateways = [a for a in first if a.role == "gateway"]
    assert [a.username for a in gateways] == ["jt808-1", "jt808-2"]
    assert gateways[0].password == gateways[1].password
    assert "clashes with a service account" in problems[0]
    text = credentials.acl_text(first)
    assert "user jt808-1\ntopic write clearday/v1/trucks/#" in text
    assert "user jt808-2\ntopic write clearday/v1/trucks/#" in text
    again, _ = credentials.plan_accounts(
        [("T1", "GPS-1")],
        {a.username: a for a in first},
        ingestor=("ingest", "p"),
        gateway="jt808",
        gateways=2,
    )
    assert [a.password for a in again if a.role == "gateway"] == [gateways[0].password] * 2


def test_broker_files_are_group_readable_and_the_passwords_private(tmp_path: Path) -> None:
    """passwd and acl: 0640 with the broker's group; credentials.csv stays 0600."""
    gid = os.getgid()  # a group this process may give files to
    paths = credentials.write_files(
        tmp_path / "auth", [Account("GPS-1", "terminal", "pw", "T1")], broker_gid=gid
    )
    for name in ("passwd", "acl"):
        st = paths[name].stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, gid), name
    assert stat.S_IMODE(paths["credentials"].stat().st_mode) == 0o600


def test_an_unknown_broker_group_is_a_clear_error() -> None:
    with pytest.raises(credentials.CannotShareWithBroker, match="--broker-group"):
        credentials.broker_group_id("no-such-group-here")
    assert credentials.broker_group_id("1883") == 1883
