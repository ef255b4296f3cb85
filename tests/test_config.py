import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hotfolder_feeder import config
from hotfolder_feeder.errors import ConfigError

MIB = 1024**2

PRINTER = '[[printers]]\nname = "p1"\nhotfolder = "hot/p1"\n'

# Every table and key the config accepts, with values that differ from the defaults.
FULL_EXAMPLE = """\
[server]
listen = "0.0.0.0:9443"
path = "/platform/push"
max_body_size = "8MiB"
allow_open_push = true

[server.auth]
tokens = ["push-token-1-0123456789", "push-token-2-0123456789"]
admin_tokens = ["admin-token-1-0123456789"]
hmac_key = "hmac-key-1"
allowed_ips = ["203.0.113.0/24", "127.0.0.1"]
trusted_proxies = ["127.0.0.1"]
read_only_ips = ["192.0.2.0/24"]

[server.tls]
cert = "/etc/feeder/cert.pem"
key = "/etc/feeder/key.pem"

[storage]
state_dir = "state"

[download]
concurrency = 4
per_host = 2
connect_timeout = "5s"
read_timeout = "2m"
max_attempts = 5
backoff_max = "10m"
max_file_size = "2GiB"
allowed_hosts = ["s3-eu-west-1.amazonaws.com"]
allow_http = true
allow_private_networks = true
stop_timeout = "30s"

[[printers]]
name = "storm-1"
hotfolder = "hot/storm-1"
staging = "/srv/staging/storm-1"
watch = "polling"
poll_interval = "500ms"
require_mount = true
max_waiting = 3
stall_after = "1h"
offline_after = "20m"
group = "storm"
name_template = "{setup}_{item_id}_{copies}_{x}_{y}"
job_artwork_template = "{job_id}-{stem}"

[[printers]]
name = "storm-2"
hotfolder = "/mnt/storm-2/hot"
group = "storm"

[[printers]]
name = "avalanche"
hotfolder = "hot/avalanche"
watch = "native"

[routing]
default = "storm"

[[routing.rules]]
setup = "AV HD6*"
pallet = "Hoodies*"
printer = "avalanche"

[[routing.rules]]
kind = "artwork_processing"
type = 2
ext = "pdf"
sku = "SGS7E-*"
mapped_sku = "JH001 ???"
description = "*Hooded*"
shipping_country = "GB"
shipping_carrier = "Hermes"
shipping_method = "express*"
group = "storm"
priority = 10

[[groups]]
name = "storm"
spread = true

[[notify.webhooks]]
url = "https://floor.example/hooks/feeder"
events = ["job_completed", "delivery_failed"]
secret = "webhook-secret"
max_attempts = 3

[log]
level = "debug"
format = "json"
"""


def write_config(tmp_path: Path, text: str, name: str = "feeder.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def build_with_printer(raw: dict[str, Any], base: Path) -> config.Settings:
    printers = [{"name": "p1", "hotfolder": "hot/p1"}]
    return config.build({"printers": printers, **raw}, base=base, source="test")


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# Defaults and a full file


def test_load_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no file, the embedded defaults give one printer, printer-1, under the current folder."""
    monkeypatch.chdir(tmp_path)

    settings = config.load(None)

    assert [printer.name for printer in settings.printers] == ["printer-1"]
    assert settings.routing.default == "printer-1"
    assert settings.routing.rules == []
    assert settings.printers[0].hotfolder == tmp_path / "hotfolders" / "printer-1"
    hotfolder = tmp_path / "hotfolders" / "printer-1"
    assert settings.printers[0].staging_dir == hotfolder / ".hotfolder-feeder"
    assert settings.storage.state_dir == tmp_path / "state"


def test_load_default_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded defaults carry the documented default of each key."""
    monkeypatch.chdir(tmp_path)

    settings = config.load(None)

    assert settings.server.listen == "127.0.0.1:8380"
    assert settings.server.path == "/kornitx/jobs"
    assert settings.server.max_body_size == 32 * MIB
    assert settings.download.concurrency == 8
    assert settings.download.per_host == 8
    assert settings.download.connect_timeout == 10.0
    assert settings.download.read_timeout == 60.0
    assert settings.download.max_attempts == 8
    assert settings.download.backoff_max == 300.0
    assert settings.download.allow_private_networks is False
    assert settings.printers[0].poll_interval == 2.0
    assert settings.printers[0].stall_after == 900.0
    assert settings.printers[0].max_waiting == 0
    assert settings.printers[0].watch == "auto"
    assert settings.printers[0].name_template == "{name}"
    assert settings.printers[0].job_artwork_template == "{job_id}_{name}"


def test_load_empty_file_defaults(tmp_path: Path) -> None:
    """An empty file gives printer-1 under the file's folder as the default printer."""
    settings = config.load(write_config(tmp_path, ""))

    assert [printer.name for printer in settings.printers] == ["printer-1"]
    assert settings.routing.default == "printer-1"
    assert settings.printers[0].hotfolder == tmp_path / "hotfolders" / "printer-1"


def test_load_full_example_server(tmp_path: Path) -> None:
    """Every [server] key of a full example file reaches the settings."""
    server = config.load(write_config(tmp_path, FULL_EXAMPLE)).server

    assert server.listen == "0.0.0.0:9443"
    assert server.path == "/platform/push"
    assert server.max_body_size == 8 * MIB
    assert server.allow_open_push is True
    assert server.auth.tokens == ["push-token-1-0123456789", "push-token-2-0123456789"]
    assert server.auth.admin_tokens == ["admin-token-1-0123456789"]
    assert server.auth.hmac_key == "hmac-key-1"
    assert server.auth.allowed_ips == ["203.0.113.0/24", "127.0.0.1"]
    assert server.auth.trusted_proxies == ["127.0.0.1"]
    assert server.auth.read_only_ips == ["192.0.2.0/24"]
    assert server.tls.cert == Path("/etc/feeder/cert.pem")
    assert server.tls.key == Path("/etc/feeder/key.pem")


def test_load_full_example_download(tmp_path: Path) -> None:
    """Every [download], [storage] and [log] key of a full example file reaches the settings."""
    settings = config.load(write_config(tmp_path, FULL_EXAMPLE))
    download = settings.download

    assert settings.storage.state_dir == tmp_path / "state"
    assert download.concurrency == 4
    assert download.per_host == 2
    assert download.connect_timeout == 5.0
    assert download.read_timeout == 120.0
    assert download.max_attempts == 5
    assert download.backoff_max == 600.0
    assert download.max_file_size == 2 * 1024**3
    assert download.allowed_hosts == ["s3-eu-west-1.amazonaws.com"]
    assert download.allow_private_networks is True
    assert download.allow_http is True
    assert download.stop_timeout == 30.0
    assert settings.log.level == "debug"
    assert settings.log.format == "json"


def test_load_full_example_printers(tmp_path: Path) -> None:
    """Every [[printers]] key of a full example file reaches the settings."""
    printers = config.load(write_config(tmp_path, FULL_EXAMPLE)).printers
    storm = printers[0]

    assert [printer.name for printer in printers] == ["storm-1", "storm-2", "avalanche"]
    assert storm.hotfolder == tmp_path / "hot" / "storm-1"
    assert storm.staging == Path("/srv/staging/storm-1")
    assert storm.staging_dir == Path("/srv/staging/storm-1")
    assert storm.watch == "polling"
    assert storm.poll_interval == 0.5
    assert storm.require_mount is True
    assert storm.max_waiting == 3
    assert storm.stall_after == 3600.0
    assert storm.offline_after == 1200.0
    assert storm.group == "storm"
    assert storm.name_template == "{setup}_{item_id}_{copies}_{x}_{y}"
    assert storm.job_artwork_template == "{job_id}-{stem}"
    assert printers[1].hotfolder == Path("/mnt/storm-2/hot")
    assert printers[2].watch == "native"


def test_load_full_example_routing(tmp_path: Path) -> None:
    """Every [routing] key of a full example file reaches the settings."""
    settings = config.load(write_config(tmp_path, FULL_EXAMPLE))
    first, second = settings.routing.rules

    assert settings.routing.default == "storm"
    assert first.printer == "avalanche"
    assert first.patterns() == {"setup": "AV HD6*", "pallet": "Hoodies*"}
    assert second.group == "storm"
    assert second.patterns() == {
        "sku": "SGS7E-*",
        "mapped_sku": "JH001 ???",
        "description": "*Hooded*",
        "type": "2",
        "kind": "artwork_processing",
        "ext": "pdf",
        "shipping_country": "GB",
        "shipping_carrier": "Hermes",
        "shipping_method": "express*",
    }
    assert [printer.name for printer in settings.group_members("storm")] == ["storm-1", "storm-2"]
    assert second.priority == 10
    assert settings.group_spreads("storm") is True


def test_load_full_example_notify(tmp_path: Path) -> None:
    """Every [[notify.webhooks]] key of a full example file reaches the settings."""
    (webhook,) = config.load(write_config(tmp_path, FULL_EXAMPLE)).notify.webhooks

    assert webhook.url == "https://floor.example/hooks/feeder"
    assert webhook.events == ["job_completed", "delivery_failed"]
    assert webhook.secret == "webhook-secret"
    assert webhook.max_attempts == 3


def test_load_full_example_round_trip(tmp_path: Path) -> None:
    """Settings dumped to JSON and built again equal the settings loaded from TOML."""
    settings = config.load(write_config(tmp_path, FULL_EXAMPLE))

    dumped = json.loads(json.dumps(settings.model_dump(mode="json")))
    rebuilt = config.build(dumped, base=tmp_path / "elsewhere", source="round trip")

    assert rebuilt == settings


def test_load_full_example_every_key(tmp_path: Path) -> None:
    """The full example sets every key of every table, so the tests above cover them all."""
    raw = tomllib.loads(FULL_EXAMPLE)
    rule_keys = set(raw["routing"]["rules"][0]) | set(raw["routing"]["rules"][1])

    assert set(raw) == set(config.Settings.model_fields)
    assert set(raw["server"]) == set(config.ServerSettings.model_fields)
    secret_files = {"tokens_file", "admin_tokens_file", "hmac_key_file"}
    assert set(raw["server"]["auth"]) | secret_files == set(config.AuthSettings.model_fields)
    assert set(raw["server"]["tls"]) == set(config.TlsSettings.model_fields)
    assert set(raw["download"]) == set(config.DownloadSettings.model_fields)
    assert set(raw["printers"][0]) == set(config.PrinterSettings.model_fields)
    assert rule_keys | {"printer", "group"} == set(config.RuleSettings.model_fields)
    assert set(raw["groups"][0]) == set(config.GroupSettings.model_fields)
    assert set(raw["notify"]["webhooks"][0]) == set(config.WebhookSettings.model_fields)
    assert set(raw["log"]) == set(config.LogSettings.model_fields)


# ---------------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("90s", 90.0, id="seconds"),
        pytest.param("15m", 900.0, id="minutes"),
        pytest.param("2h", 7200.0, id="hours"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param(" 30 s ", 30.0, id="spaces"),
        pytest.param("45", 45.0, id="string-number"),
        pytest.param(45, 45.0, id="integer"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param(0, 0.0, id="zero"),
    ],
)
def test_duration_values(tmp_path: Path, value: Any, seconds: float) -> None:
    """Durations are read in ms, s, m or h, and a bare number is seconds."""
    settings = build_with_printer({"download": {"read_timeout": value}}, tmp_path)

    assert settings.download.read_timeout == seconds
    assert config.parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "size"),
    [
        pytest.param("32MiB", 32 * MIB, id="mebibytes"),
        pytest.param("2GiB", 2 * 1024**3, id="gibibytes"),
        pytest.param("512KiB", 512 * 1024, id="kibibytes"),
        pytest.param("500KB", 500_000, id="kilobytes"),
        pytest.param("1.5MiB", 3 * MIB // 2, id="fraction"),
        pytest.param("100B", 100, id="bytes-unit"),
        pytest.param(4096, 4096, id="bare-bytes"),
        pytest.param("4096", 4096, id="string-bytes"),
        pytest.param(0, 0, id="zero"),
    ],
)
def test_size_values(tmp_path: Path, value: Any, size: int) -> None:
    """Sizes are read with binary or decimal units, and a bare number is bytes."""
    settings = build_with_printer({"download": {"max_file_size": value}}, tmp_path)

    assert settings.download.max_file_size == size
    assert config.parse_size(value) == size


@pytest.mark.parametrize("literal", ["nan", "inf"])
def test_duration_not_finite(tmp_path: Path, literal: str) -> None:
    """A duration of TOML nan or inf is rejected and the message names the key."""
    path = write_config(tmp_path, f"[download]\nread_timeout = {literal}\n" + PRINTER)

    assert "download.read_timeout" in config_error(path)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        pytest.param("127.0.0.1:8380", "127.0.0.1", 8380, id="ipv4"),
        pytest.param("[::1]:8380", "::1", 8380, id="ipv6"),
        pytest.param(":8380", "0.0.0.0", 8380, id="no-host"),
        pytest.param("localhost:0", "localhost", 0, id="any-port"),
    ],
)
def test_split_listen_values(listen: str, host: str, port: int) -> None:
    """split_listen() separates host and port, with brackets removed from IPv6."""
    assert config.split_listen(listen) == (host, port)


# ---------------------------------------------------------------------------------------------
# Invalid configs

INVALID_CASES = [
    pytest.param(
        '[server]\ncolour = "blue"\n' + PRINTER,
        ["server.colour", "unknown key 'colour'", "[server]"],
        id="unknown-server-key",
    ),
    pytest.param(
        '[server.auth]\ntoken = "x"\n' + PRINTER,
        ["server.auth.token", "unknown key 'token'", "[server.auth]"],
        id="unknown-auth-key",
    ),
    pytest.param(
        PRINTER + 'colour = "blue"\n',
        ["printers[0].colour", "unknown key 'colour'"],
        id="unknown-printer-key",
    ),
    pytest.param(
        '[printer]\nname = "p1"\n' + PRINTER,
        ["unknown key 'printer'", "top level"],
        id="unknown-top-level-table",
    ),
    pytest.param(
        '[download]\nread_timeout = "10 seconds"\n' + PRINTER,
        ["download.read_timeout", "'10 seconds'"],
        id="bad-duration",
    ),
    pytest.param(
        '[download]\nconnect_timeout = "-5s"\n' + PRINTER,
        ["download.connect_timeout", "'-5s'"],
        id="negative-duration-text",
    ),
    pytest.param(
        "[download]\nbackoff_max = -5\n" + PRINTER,
        ["download.backoff_max", "negative"],
        id="negative-duration-number",
    ),
    pytest.param(
        PRINTER + 'poll_interval = "0s"\n',
        ["printers[0]", "poll_interval"],
        id="zero-poll-interval",
    ),
    pytest.param(
        "[download]\nmax_file_size = -1\n" + PRINTER,
        ["download.max_file_size", "negative"],
        id="negative-size",
    ),
    pytest.param(
        '[server]\nmax_body_size = "-1MiB"\n' + PRINTER,
        ["server.max_body_size", "'-1MiB'"],
        id="negative-size-text",
    ),
    pytest.param(
        '[server]\nmax_body_size = "32 megabytes"\n' + PRINTER,
        ["server.max_body_size", "'32 megabytes'"],
        id="bad-size-unit",
    ),
    pytest.param(
        '[server]\nlisten = "localhost"\n' + PRINTER,
        ["server", "listen", "'localhost'"],
        id="listen-no-port",
    ),
    pytest.param(
        '[server]\nlisten = "127.0.0.1:70000"\n' + PRINTER,
        ["server", "listen", "'127.0.0.1:70000'"],
        id="listen-port-too-big",
    ),
    pytest.param(
        '[server]\nlisten = "127.0.0.1:http"\n' + PRINTER,
        ["server", "listen", "'127.0.0.1:http'"],
        id="listen-port-name",
    ),
    pytest.param(
        '[server]\npath = "kornitx/jobs"\n' + PRINTER,
        ["server", "path", "'kornitx/jobs'"],
        id="path-no-slash",
    ),
    pytest.param(
        '[server.tls]\ncert = "cert.pem"\n' + PRINTER,
        ["server", "tls", "key"],
        id="tls-cert-without-key",
    ),
    pytest.param(
        "[download]\nconcurrency = 0\n" + PRINTER,
        ["download.concurrency"],
        id="zero-concurrency",
    ),
    pytest.param(
        PRINTER + 'watch = "inotify"\n',
        ["printers[0].watch", "'polling'"],
        id="bad-watch-mode",
    ),
    pytest.param(
        PRINTER + "max_waiting = -1\n",
        ["printers[0].max_waiting"],
        id="negative-max-waiting",
    ),
    pytest.param(
        '[[printers]]\nname = "p1"\n',
        ["printers[0].hotfolder", "Field required"],
        id="printer-without-hotfolder",
    ),
    pytest.param(
        '[[printers]]\nname = "../p1"\nhotfolder = "hot"\n',
        ["printers[0].name"],
        id="printer-name-path",
    ),
    pytest.param(
        PRINTER + '[[routing.rules]]\nsku = "A*"\nprinter = "p1"\ngroup = "storm"\n',
        ["routing.rules[0]", "exactly one of printer or group"],
        id="rule-printer-and-group",
    ),
    pytest.param(
        PRINTER + '[[routing.rules]]\nsku = "A*"\n',
        ["routing.rules[0]", "exactly one of printer or group"],
        id="rule-without-target",
    ),
    pytest.param(
        PRINTER + '[[routing.rules]]\nprinter = "p1"\n[[routing.rules]]\nprinter = "p9"\n',
        ["routing.rules[1]", "'p9'", "not configured"],
        id="rule-unknown-printer",
    ),
    pytest.param(
        PRINTER + '[[routing.rules]]\ngroup = "storm"\n',
        ["routing.rules[0]", "'storm'"],
        id="rule-unknown-group",
    ),
    pytest.param(
        PRINTER + '[[routing.rules]]\ncolour = "blue"\nprinter = "p1"\n',
        ["routing.rules[0].colour", "unknown key 'colour'"],
        id="rule-unknown-key",
    ),
    pytest.param(
        PRINTER + '[routing]\ndefault = "p9"\n',
        ["routing.default", "'p9'", "not configured"],
        id="default-unknown-printer",
    ),
    pytest.param(
        PRINTER + PRINTER.replace("hot/p1", "hot/other"),
        ["printer names must be unique", "p1"],
        id="duplicate-printer-names",
    ),
    pytest.param(
        PRINTER + 'name_template = "{job_id}_{nope}"\n',
        ["printers[0]", "{nope}", "unknown field 'nope'"],
        id="bad-name-template",
    ),
    pytest.param(
        PRINTER + 'job_artwork_template = "{name!r}"\n',
        ["printers[0]", "{name!r}"],
        id="bad-job-artwork-template",
    ),
    pytest.param(
        PRINTER + 'name_template = "{name"\n',
        ["printers[0]", "'{name'"],
        id="unclosed-template-brace",
    ),
    pytest.param(
        '[log]\nlevel = "verbose"\n' + PRINTER,
        ["log.level", "'debug'"],
        id="bad-log-level",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), INVALID_CASES)
def test_load_invalid(tmp_path: Path, text: str, fragments: list[str]) -> None:
    """An invalid config raises ConfigError naming the file and the key."""
    path = write_config(tmp_path, text)

    message = config_error(path)

    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


@pytest.mark.parametrize("key", ["name_template", "job_artwork_template"])
def test_load_bad_template_names_key(tmp_path: Path, key: str) -> None:
    """A bad template raises ConfigError naming the exact template key."""
    path = write_config(tmp_path, PRINTER + f'{key} = "{{nope}}"\n')

    assert f"printers[0].{key}" in config_error(path)


def test_load_bare_ipv6_listen(tmp_path: Path) -> None:
    """A listen address without a port, such as a bare "::1", is rejected."""
    path = write_config(tmp_path, '[server]\nlisten = "::1"\n' + PRINTER)

    assert "listen" in config_error(path)


def test_load_invalid_toml(tmp_path: Path) -> None:
    """A file that is not valid TOML raises ConfigError naming the file and the line."""
    path = write_config(tmp_path, '[server]\nlisten = "127.0.0.1:8380\n')

    message = config_error(path)

    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 2" in message


def test_load_missing_file(tmp_path: Path) -> None:
    """A config file that does not exist raises ConfigError naming the file."""
    path = tmp_path / "missing.toml"

    message = config_error(path)

    assert str(path) in message
    assert "not found" in message


def test_load_folder_not_file(tmp_path: Path) -> None:
    """A folder given as the config file raises ConfigError naming it."""
    message = config_error(tmp_path)

    assert str(tmp_path) in message
    assert "cannot read" in message


def test_load_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 raises ConfigError naming the file."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('[log]\nlevel = "d\xe9bug"\n'.encode("latin-1"))

    message = config_error(path)

    assert str(path) in message
    assert "cannot read" in message


def test_build_names_source(tmp_path: Path) -> None:
    """build() names its `source` in the error message."""
    with pytest.raises(ConfigError) as caught:
        config.build({"server": {"colour": "blue"}}, base=tmp_path, source="test source")

    assert "invalid config in test source" in str(caught.value)
    assert "server.colour" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Paths and secrets


def test_load_paths_relative_to_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths are resolved against the config file's folder, not the current folder."""
    folder = tmp_path / "etc"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = (
        '[storage]\nstate_dir = "var/state"\n'
        '[[printers]]\nname = "p1"\nhotfolder = "hot/p1"\nstaging = "../staging/p1"\n'
        '[[printers]]\nname = "p2"\nhotfolder = "/srv/hot/p2"\n'
    )

    settings = config.load(write_config(folder, text))

    assert settings.storage.state_dir == folder / "var" / "state"
    assert settings.printers[0].hotfolder == folder / "hot" / "p1"
    assert settings.printers[0].staging == folder / "../staging/p1"
    assert settings.printers[1].hotfolder == Path("/srv/hot/p2")
    assert settings.printers[1].staging_dir == Path("/srv/hot/p2/.hotfolder-feeder")


def test_load_relative_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config path given relative to the current folder still yields absolute paths."""
    folder = tmp_path / "etc"
    folder.mkdir()
    write_config(folder, PRINTER)
    monkeypatch.chdir(tmp_path)

    settings = config.load(Path("etc/feeder.toml"))

    assert settings.printers[0].hotfolder == folder / "hot" / "p1"
    assert settings.printers[0].hotfolder.is_absolute()


def test_load_tls_paths_relative_to_file(tmp_path: Path) -> None:
    """Relative [server.tls] cert and key paths are resolved against the config file's folder."""
    text = '[server.tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n' + PRINTER

    settings = config.load(write_config(tmp_path, text))

    assert settings.server.tls.cert == tmp_path / "tls" / "cert.pem"
    assert settings.server.tls.key == tmp_path / "tls" / "key.pem"


def test_redacted_hides_secrets(tmp_path: Path) -> None:
    """redacted() replaces every token and the HMAC key, and keeps the other values."""
    settings = config.load(write_config(tmp_path, FULL_EXAMPLE))

    data = config.redacted(settings)
    text = json.dumps(data)

    for secret in ("push-token-1-0123456789", "push-token-2-0123456789", "admin-token-1-0123456789", "hmac-key-1", "webhook-secret"):
        assert secret not in text
    assert data["server"]["auth"]["tokens"] == ["<23 characters>", "<23 characters>"]
    assert data["server"]["auth"]["admin_tokens"] == ["<24 characters>"]
    assert data["server"]["auth"]["hmac_key"] == "<10 characters>"
    assert data["server"]["auth"]["allowed_ips"] == ["203.0.113.0/24", "127.0.0.1"]
    assert data["server"]["listen"] == "0.0.0.0:9443"
    assert data["printers"][0]["name"] == "storm-1"


def test_redacted_keeps_settings(tmp_path: Path) -> None:
    """redacted() leaves the settings it was given unchanged."""
    settings = config.load(write_config(tmp_path, FULL_EXAMPLE))

    config.redacted(settings)

    assert settings.server.auth.tokens == ["push-token-1-0123456789", "push-token-2-0123456789"]
    assert settings.server.auth.hmac_key == "hmac-key-1"


def test_redacted_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """redacted() of settings without secrets shows empty token lists and no HMAC key."""
    monkeypatch.chdir(tmp_path)

    auth = config.redacted(config.load(None))["server"]["auth"]

    assert auth["tokens"] == []
    assert auth["admin_tokens"] == []
    assert auth["hmac_key"] is None


def test_secrets_from_files(tmp_path: Path) -> None:
    """Tokens and the HMAC key can live in files beside a world-readable config."""
    (tmp_path / "tokens").write_text("# push tokens\npush-token-from-file-1\n\npush-token-from-file-2\n")
    (tmp_path / "hmac").write_text("hmac-key-from-file\n")
    text = '[server.auth]\ntokens = ["inline-token-0123456789"]\ntokens_file = "tokens"\nhmac_key_file = "hmac"\n'

    auth = config.load(write_config(tmp_path, text)).server.auth

    assert auth.tokens == ["inline-token-0123456789", "push-token-from-file-1", "push-token-from-file-2"]
    assert auth.hmac_key == "hmac-key-from-file"


def test_secret_file_missing(tmp_path: Path) -> None:
    """A secret file that cannot be read is a config error naming the key and the file."""
    text = '[server.auth]\ntokens_file = "missing-tokens"\n'

    with pytest.raises(ConfigError, match=r"server.auth.tokens_file: cannot read .*missing-tokens"):
        config.load(write_config(tmp_path, text))


def test_secrets_from_environment(tmp_path: Path) -> None:
    """Secrets in the environment replace those of the file."""
    environ = {"HOTFOLDER_FEEDER_TOKENS": "env-token-a-0123456789, env-token-b-0123456789", "HOTFOLDER_FEEDER_HMAC_KEY": "env-hmac"}
    raw = {"server": {"auth": {"tokens": ["file-token-0123456789"]}}}

    auth = config.build(raw, base=tmp_path, source="test", environ=environ).server.auth

    assert auth.tokens == ["env-token-a-0123456789", "env-token-b-0123456789"]
    assert auth.hmac_key == "env-hmac"


def test_short_token_rejected(tmp_path: Path) -> None:
    """A token shorter than 16 characters is rejected with advice on making one."""
    with pytest.raises(ConfigError, match=r"server.auth.tokens: a token of 6 characters is too easy to guess"):
        config.build({"server": {"auth": {"tokens": ["secret"]}}}, base=tmp_path, source="test")


def test_shared_hotfolder_rejected(tmp_path: Path) -> None:
    """Two printers on one hot folder are refused: each would take the other's files."""
    raw = {"printers": [{"name": "a", "hotfolder": "hot"}, {"name": "b", "hotfolder": "./hot/"}], "routing": {"default": "a"}}

    with pytest.raises(ConfigError, match="printers a and b share hot folder"):
        config.build(raw, base=tmp_path, source="test")
