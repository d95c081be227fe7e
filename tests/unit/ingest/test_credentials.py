"""The broker's accounts (Mosquitto Dynamic Security configuration) generated from trucks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ingest import credentials
from ingest.credentials import Account


def test_password_is_the_plugins_pbkdf2_sha512_with_salt_and_iterations() -> None:
    """The fields Mosquitto's plugin reads: a 64-byte digest and a 12-byte salt in
    base64, and the iteration count (a broker accepting the login: integration tests)."""
    salt = b"0123456789ab"
    fields = credentials.dynsec_password("s3cret", salt=salt)
    assert fields["iterations"] == credentials.PBKDF2_ITERATIONS
    assert base64.b64decode(str(fields["salt"])) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, credentials.PBKDF2_ITERATIONS)
    assert base64.b64decode(str(fields["password"])) == expected
    assert credentials.dynsec_password("s3cret") != credentials.dynsec_password("s3cret")


def roles_of(config: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {
        r["rolename"]: [(a["acltype"], a["topic"]) for a in r["acls"] if a["allow"]]
        for r in config["roles"]
    }


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


def test_terminals_publish_only_their_own_topics_and_nothing_else_is_allowed() -> None:
    """Deny by default; a terminal's role allows its three topics (send only), the
    ingestor's subscribing to and receiving every truck's and gateway's, the gateway's
    sending them and its batches of many trucks' fixes."""
    config = credentials.dynsec_config(
        [
            Account("ingest", "ingestor", "x"),
            Account("gw", "gateway", "y"),
            Account("GPS-1", "terminal", "plain-terminal-secret", "T1"),
        ]
    )
    assert config["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    assert roles_of(config) == {
        "ingestor": [
            ("subscribePattern", "clearday/v1/trucks/#"),
            ("subscribePattern", "$share/+/clearday/v1/trucks/#"),
            ("publishClientReceive", "clearday/v1/trucks/#"),
            ("subscribePattern", "clearday/v1/gateways/#"),
            ("subscribePattern", "$share/+/clearday/v1/gateways/#"),
            ("publishClientReceive", "clearday/v1/gateways/#"),
        ],
        "gateway": [
            ("publishClientSend", "clearday/v1/trucks/#"),
            ("publishClientSend", "clearday/v1/gateways/+/positions"),
        ],
        "terminal-GPS-1": [
            ("publishClientSend", "clearday/v1/trucks/GPS-1/positions"),
            ("publishClientSend", "clearday/v1/trucks/GPS-1/events"),
            ("publishClientSend", "clearday/v1/trucks/GPS-1/status"),
        ],
    }
    clients = {c["username"]: c for c in config["clients"]}
    assert {u: c["clientid"] for u, c in clients.items()} == {u: u for u in clients}
    assert clients["GPS-1"]["roles"] == [{"rolename": "terminal-GPS-1"}]
    assert "plain-terminal-secret" not in json.dumps(config), "no plain password in the file"


def test_files_are_private(tmp_path: Path) -> None:
    paths = credentials.write_files(tmp_path / "auth", [Account("GPS-1", "terminal", "pw", "T1")])
    for path in paths.values():
        assert path.stat().st_mode & 0o077 == 0
    assert credentials.read_existing(paths["credentials"])["GPS-1"].password == "pw"
    assert json.loads(paths["config"].read_text())["clients"][0]["username"] == "GPS-1"


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
    clients = {c["username"]: c for c in credentials.dynsec_config(accounts)["clients"]}
    assert (
        clients["ingest-1"]["roles"] == clients["ingest-2"]["roles"] == [{"rolename": "ingestor"}]
    )
    assert (clients["ingest-1"]["clientid"], clients["ingest-2"]["clientid"]) == (
        "ingest-1",
        "ingest-2",
    )
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
    config = credentials.dynsec_config(first)
    clients = {c["username"]: c for c in config["clients"]}
    assert clients["jt808-1"]["roles"] == clients["jt808-2"]["roles"] == [{"rolename": "gateway"}]
    assert clients["jt808-1"]["clientid"] == "jt808-1"
    (gateway_role,) = [r for r in config["roles"] if r["rolename"] == "gateway"]
    assert [(a["acltype"], a["topic"]) for a in gateway_role["acls"]] == [
        ("publishClientSend", "clearday/v1/trucks/#"),
        ("publishClientSend", "clearday/v1/gateways/+/positions"),
    ]
    again, _ = credentials.plan_accounts(
        [("T1", "GPS-1")],
        {a.username: a for a in first},
        ingestor=("ingest", "p"),
        gateway="jt808",
        gateways=2,
    )
    assert [a.password for a in again if a.role == "gateway"] == [gateways[0].password] * 2


def test_broker_files_are_group_readable_and_the_passwords_private(tmp_path: Path) -> None:
    """dynamic-security.json: 0640 with the broker's group; credentials.csv stays 0600."""
    gid = os.getgid()  # a group this process may give files to
    paths = credentials.write_files(
        tmp_path / "auth", [Account("GPS-1", "terminal", "pw", "T1")], broker_gid=gid
    )
    st = paths["config"].stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, gid)
    assert stat.S_IMODE(paths["credentials"].stat().st_mode) == 0o600


def test_an_unknown_broker_group_is_a_clear_error() -> None:
    with pytest.raises(credentials.CannotShareWithBroker, match="--broker-group"):
        credentials.broker_group_id("no-such-group-here")
    assert credentials.broker_group_id("1883") == 1883
