"""TOML configuration to typed settings: defaults, units and validation.

Every key has a default, so an empty file (or no file) gives a working daemon that feeds one
printer, `printer-1`, from folders under the current directory. Unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import quickp
from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
}  # fmt: skip


def parse_duration(value: Any) -> float:
    """Parse `"90s"`, `"15m"`, `"2h"`, `"500ms"` or a bare number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as \"90s\" or \"15m\", got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as \"90s\" or \"15m\", got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds, 0 or more, got {value!r}")
    return seconds


def parse_size(value: Any) -> int:
    """Parse `"32MiB"`, `"2GiB"`, `"500KB"` or a bare number of bytes into bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as \"32MiB\", got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"expected a size such as \"32MiB\" or \"2GiB\", got {value!r}")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def split_listen(listen: str) -> tuple[str, int]:
    """Split `"host:port"` (or `"[::1]:port"`) into host and port."""
    host, separator, port = listen.rpartition(":")
    bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not separator or bare_ipv6 or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"listen must look like \"127.0.0.1:8380\" or \"[::1]:8380\", got {listen!r}"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSettings(_Table):
    # Several tokens may be valid at once, so they can be rotated without a gap.
    tokens: list[str] = []
    admin_tokens: list[str] = []
    hmac_key: str | None = None
    # Files with one secret per line (blank lines and lines starting with # are skipped), so the
    # config itself can be world-readable. Added to the inline values above.
    tokens_file: Path | None = None
    admin_tokens_file: Path | None = None
    hmac_key_file: Path | None = None
    allowed_ips: list[str] = []
    # Addresses of reverse proxies whose X-Forwarded-For names the real client.
    trusted_proxies: list[str] = []
    # Addresses that may read the dashboard and the API without a token (never act or push).
    read_only_ips: list[str] = []

    @field_validator("allowed_ips", "trusted_proxies", "read_only_ips")
    @classmethod
    def _check_networks(cls, networks: list[str]) -> list[str]:
        return check_networks(networks)

    @field_validator("tokens", "admin_tokens")
    @classmethod
    def _check_tokens(cls, tokens: list[str]) -> list[str]:
        for token in tokens:
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"a token of {len(token)} characters is too easy to guess; use at least "
                    f"{MIN_TOKEN_LENGTH}, for example from `openssl rand -hex 32`"
                )
        return tokens


def check_networks(networks: list[str]) -> list[str]:
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(
                f"entry {network!r} is not an address or CIDR range such as \"203.0.113.0/24\""
            ) from None
    return networks


# Shorter tokens are rejected, because the push port faces the internet.
MIN_TOKEN_LENGTH = 16
SECRET_ENVIRONMENT = {
    "tokens": "HOTFOLDER_FEEDER_TOKENS",
    "admin_tokens": "HOTFOLDER_FEEDER_ADMIN_TOKENS",
    "hmac_key": "HOTFOLDER_FEEDER_HMAC_KEY",
}


class TlsSettings(_Table):
    cert: Path | None = None
    key: Path | None = None


class ServerSettings(_Table):
    listen: str = "127.0.0.1:8380"
    path: str = "/kornitx/jobs"
    max_body_size: Size = 32 * 1024**2
    # With no push token the daemon only listens on loopback, unless this is set.
    allow_open_push: bool = False
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        split_listen(self.listen)
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if (self.tls.cert is None) != (self.tls.key is None):
            raise ValueError("tls needs both cert and key, or neither")
        return self


class StorageSettings(_Table):
    state_dir: Path = Path("state")


class DownloadSettings(_Table):
    concurrency: int = Field(8, ge=1, le=256)
    per_host: int = Field(8, ge=1, le=256)
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 60.0
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_max: Duration = 300.0
    # 0 means no limit.
    max_file_size: Size = 0
    allowed_hosts: list[str] = []
    # Plain http lets anyone on the path swap the artwork; S3 and CDNs all serve https.
    allow_http: bool = False
    # True allows every private address, or a list allows those networks, such as a floor's own
    # artwork server; link-local cloud metadata addresses stay refused unless listed.
    allow_private_networks: bool | list[str] = False

    # How long a SIGTERM waits for running downloads before it puts them back to pending.
    stop_timeout: Duration = 20.0

    @field_validator("allow_private_networks")
    @classmethod
    def _check_private(cls, allowed: bool | list[str]) -> bool | list[str]:
        return allowed if isinstance(allowed, bool) else check_networks(allowed)


class PrinterSettings(_Table):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    hotfolder: Path
    staging: Path | None = None
    watch: Literal["auto", "native", "polling", "off"] = "auto"
    poll_interval: Duration = 2.0
    require_mount: bool = False
    # 0 means no limit.
    max_waiting: int = Field(0, ge=0)
    stall_after: Duration = 900.0
    # A printer with files waiting whose RIP has taken nothing for this long is offline.
    offline_after: Duration = 600.0
    group: str | None = None
    name_template: str = "{name}"
    job_artwork_template: str = "{job_id}_{name}"

    @field_validator("name_template", "job_artwork_template")
    @classmethod
    def _check_template(cls, template: str) -> str:
        quickp.check_template(template)
        return template

    @field_validator("poll_interval")
    @classmethod
    def _check_poll_interval(cls, interval: float) -> float:
        if interval <= 0:
            raise ValueError("poll_interval must be more than 0s")
        return interval

    @property
    def staging_dir(self) -> Path:
        """The staging folder: as configured, else a dot-folder inside the hot folder."""
        return self.staging if self.staging is not None else self.hotfolder / STAGING_DIR_NAME


STAGING_DIR_NAME = ".hotfolder-feeder"

MATCH_KEYS = (
    "setup", "pallet", "sku", "mapped_sku", "description", "type", "kind", "ext",
    "shipping_country", "shipping_carrier", "shipping_method",
)  # fmt: skip


class RuleSettings(_Table):
    printer: str | None = None
    group: str | None = None
    # Higher goes first: downloads start and files enter a hot folder with a feed limit in order.
    priority: int = Field(0, ge=-1000, le=1000)
    setup: str | None = None
    pallet: str | None = None
    sku: str | None = None
    mapped_sku: str | None = None
    description: str | None = None
    type: str | None = None
    kind: Literal["artwork_processing", "consolidation"] | None = None
    ext: str | None = None
    shipping_country: str | None = None
    shipping_carrier: str | None = None
    shipping_method: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _type_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("type"), int):
            return {**data, "type": str(data["type"])}
        return data

    @model_validator(mode="after")
    def _check_target(self) -> RuleSettings:
        if (self.printer is None) == (self.group is None):
            raise ValueError("a rule needs exactly one of printer or group")
        return self

    def patterns(self) -> dict[str, str]:
        """Return the match keys this rule sets, as key -> glob pattern."""
        return {key: getattr(self, key) for key in MATCH_KEYS if getattr(self, key) is not None}


class RoutingSettings(_Table):
    default: str | None = None
    rules: list[RuleSettings] = []


class GroupSettings(_Table):
    name: str = Field(min_length=1)
    # False: each job goes whole to one printer of the group. True: each file to the least busy.
    spread: bool = False


NOTIFY_EVENTS = (
    "job_delivered", "job_completed", "delivery_failed", "file_stalled",
    "printer_offline", "printer_online",
)  # fmt: skip


class WebhookSettings(_Table):
    url: str = Field(pattern=r"^https?://")
    events: list[Literal[NOTIFY_EVENTS]] = list(NOTIFY_EVENTS)  # type: ignore[valid-type]
    # Key for the X-Hotfolder-Feeder-Signature header: HMAC-SHA256 of the body, hex.
    secret: str | None = None
    max_attempts: int = Field(8, ge=1, le=100)


class NotifySettings(_Table):
    webhooks: list[WebhookSettings] = []


class LogSettings(_Table):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(_Table):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    download: DownloadSettings = DownloadSettings()
    printers: list[PrinterSettings] = []
    routing: RoutingSettings = RoutingSettings()
    groups: list[GroupSettings] = []
    notify: NotifySettings = NotifySettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        names = [printer.name for printer in self.printers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"printer names must be unique, repeated: {', '.join(duplicates)}")
        if not self.printers:
            raise ValueError("at least one [[printers]] entry is needed")
        _check_distinct_folders(self.printers)
        groups = {printer.group for printer in self.printers if printer.group}
        clashes = sorted(groups & set(names))
        if clashes:
            raise ValueError(
                f"group names must differ from printer names, so a rule's target is never "
                f"ambiguous: {', '.join(clashes)}"
            )
        for index, group in enumerate(self.groups):
            if group.name not in groups:
                raise ValueError(
                    f"groups[{index}] is {group.name!r}, which no printer names as its group; "
                    f"groups: {', '.join(sorted(groups)) or 'none'}"
                )
        _check_target(self.routing.default, None, names, groups, "routing.default")
        for index, rule in enumerate(self.routing.rules):
            _check_target(rule.printer, rule.group, names, groups, f"routing.rules[{index}]")
        return self

    def printer(self, name: str) -> PrinterSettings:
        """Return the printer called `name`; raises KeyError when there is none."""
        for printer in self.printers:
            if printer.name == name:
                return printer
        raise KeyError(name)

    def group_members(self, group: str) -> list[PrinterSettings]:
        return [printer for printer in self.printers if printer.group == group]

    def group_spreads(self, group: str) -> bool:
        return any(settings.spread for settings in self.groups if settings.name == group)


def _check_distinct_folders(printers: list[PrinterSettings]) -> None:
    """Refuse two printers on one hot folder: each would take the other's files for its own."""
    seen: dict[str, str] = {}
    for printer in printers:
        folder = os.path.normpath(printer.hotfolder)
        if folder in seen:
            raise ValueError(
                f"printers {seen[folder]} and {printer.name} share hot folder {printer.hotfolder}; "
                "give each printer its own"
            )
        seen[folder] = printer.name


def _check_target(
    printer: str | None, group: str | None, names: list[str], groups: set[str], where: str
) -> None:
    if printer is not None and printer not in names and printer not in groups:
        raise ValueError(
            f"{where} names printer {printer!r}, which is not configured; "
            f"printers: {', '.join(names)}; groups: {', '.join(sorted(groups)) or 'none'}"
        )
    if group is not None and group not in groups:
        raise ValueError(
            f"{where} names group {group!r}, which no printer belongs to; "
            f"groups: {', '.join(sorted(groups)) or 'none'}"
        )


EMBEDDED_DEFAULTS: dict[str, Any] = {
    "printers": [{"name": "printer-1", "hotfolder": "hotfolders/printer-1"}],
    "routing": {"default": "printer-1"},
}


def load(path: Path | None) -> Settings:
    """Load settings from a TOML file, or the embedded defaults when `path` is None.

    Relative paths in a file are taken from the file's folder, and from the current folder for
    the embedded defaults. Raises ConfigError naming the file, the key and the problem.
    """
    if path is None:
        return build(EMBEDDED_DEFAULTS, base=Path.cwd(), source="embedded defaults")

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return build(raw, base=path.resolve().parent, source=str(path))


def build(
    raw: dict[str, Any], base: Path, source: str, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate a parsed TOML table and make its paths absolute against `base`."""
    if "printers" not in raw:
        raw = {**raw, "printers": EMBEDDED_DEFAULTS["printers"]}
        if "default" not in raw.get("routing", {}):
            raw["routing"] = {**raw.get("routing", {}), "default": "printer-1"}
    raw = _with_environment_secrets(raw, environ if environ is not None else os.environ)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid config in {source}:\n{describe(error)}") from None
    return _with_file_secrets(_absolute(settings, base))


def _with_environment_secrets(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Let secrets in the environment replace those in the file, as systemd credentials do."""
    auth = dict(raw.get("server", {}).get("auth", {}))
    for key, variable in SECRET_ENVIRONMENT.items():
        value = environ.get(variable, "").strip()
        if value:
            auth[key] = value if key == "hmac_key" else value.replace(",", " ").split()
    if not auth:
        return raw
    return {**raw, "server": {**raw.get("server", {}), "auth": auth}}


def _with_file_secrets(settings: Settings) -> Settings:
    auth = settings.server.auth
    update: dict[str, Any] = {}
    if auth.tokens_file:
        update["tokens"] = [*auth.tokens, *_read_secrets(auth.tokens_file, "tokens_file")]
    if auth.admin_tokens_file:
        update["admin_tokens"] = [*auth.admin_tokens, *_read_secrets(auth.admin_tokens_file, "admin_tokens_file")]
    if auth.hmac_key_file:
        keys = _read_secrets(auth.hmac_key_file, "hmac_key_file")
        if len(keys) != 1:
            raise ConfigError(f"server.auth.hmac_key_file {auth.hmac_key_file} must hold exactly one key")
        update["hmac_key"] = keys[0]
    if not update:
        return settings
    try:
        checked = AuthSettings.model_validate({**auth.model_dump(), **update})
    except ValidationError as error:
        raise ConfigError(f"invalid secret file:\n{describe(error)}") from None
    server = settings.server.model_copy(update={"auth": checked})
    return settings.model_copy(update={"server": server})


def _read_secrets(path: Path, key: str) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"server.auth.{key}: cannot read {path}: {error}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def describe(error: ValidationError) -> str:
    """Turn pydantic's errors into one line per problem that names the TOML key."""
    lines = []
    for problem in error.errors():
        key = _dotted(problem["loc"])
        if problem["type"] == "extra_forbidden":
            table, _, name = key.rpartition(".")
            where = f"table [{table}]" if table else "the top level"
            lines.append(f"  {key}: unknown key {name!r} in {where}; check its spelling")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {key or '(top level)'}: {message}")
    return "\n".join(lines)


def _dotted(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def _absolute(settings: Settings, base: Path) -> Settings:
    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    printers = [
        printer.model_copy(
            update={
                "hotfolder": absolute(printer.hotfolder),
                "staging": absolute(printer.staging) if printer.staging else None,
            }
        )
        for printer in settings.printers
    ]
    storage = settings.storage.model_copy(update={"state_dir": absolute(settings.storage.state_dir)})
    tls = settings.server.tls.model_copy(
        update={
            "cert": absolute(settings.server.tls.cert) if settings.server.tls.cert else None,
            "key": absolute(settings.server.tls.key) if settings.server.tls.key else None,
        }
    )
    auth = settings.server.auth.model_copy(
        update={
            key: absolute(getattr(settings.server.auth, key))
            for key in ("tokens_file", "admin_tokens_file", "hmac_key_file")
            if getattr(settings.server.auth, key)
        }
    )
    server = settings.server.model_copy(update={"tls": tls, "auth": auth})
    return settings.model_copy(update={"printers": printers, "storage": storage, "server": server})


def redacted(settings: Settings) -> dict[str, Any]:
    """Return the settings as a dict with every secret replaced, for the start-up log line."""
    data = settings.model_dump(mode="json")
    auth = data["server"]["auth"]
    auth["tokens"] = [_mask(token) for token in auth["tokens"]]
    auth["admin_tokens"] = [_mask(token) for token in auth["admin_tokens"]]
    auth["hmac_key"] = _mask(auth["hmac_key"]) if auth["hmac_key"] else None
    for webhook in data["notify"]["webhooks"]:
        webhook["secret"] = _mask(webhook["secret"]) if webhook["secret"] else None
        webhook["url"] = webhook["url"].split("?", 1)[0]
    return data


def _mask(secret: str) -> str:
    return f"<{len(secret)} characters>"
