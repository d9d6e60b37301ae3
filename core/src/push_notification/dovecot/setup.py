"""``push-notification dovecot-config``: connect a stock Dovecot to the daemon in one command.

Installs the bridge Lua script where Dovecot's mail processes can read it and prints the
dovecot.conf snippet (2.3 ``plugin { }`` form or 2.4 ``push_notification`` block), the
daemon's ``spool_dir`` line and the spool directory's owner and mode.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import click

from push_notification.config.cli_options import SYSTEM_CONFIG, ingress_url_callback
from push_notification.config.ingress_address import DEFAULT_URL, TRANSACTIONS_PATH, is_loopback_host
from push_notification.dovecot.bytecode import compile_lua

__all__ = ["BridgeOptions", "dovecot_config", "install_script", "plugin_settings", "render_snippet", "script_source"]

DEFAULT_INSTALL_DIR = "/usr/local/share/push-notification"
DEFAULT_SPOOL = "/var/spool/push-notification"
DEFAULT_INGRESS = DEFAULT_URL + TRANSACTIONS_PATH
SCRIPT_NAME = "dovecot-bridge.lua"
#: Beside SCRIPT_NAME (the loader Dovecot loads): the bridge's source, its bytecode, and what the
#: loader runs when the bytecode does not load (fallback.lua: a warning, then the source).
SOURCE_NAME = "dovecot-bridge-source.lua"
BYTECODE_NAME = "dovecot-bridge.luac"
FALLBACK_NAME = "dovecot-bridge-fallback.lua"
#: The http transport (bridge_http.lua), which the bridge loads only when it POSTs: source and bytecode.
HTTP_SOURCE_NAME = "dovecot-bridge-http-source.lua"
HTTP_BYTECODE_NAME = "dovecot-bridge-http.luac"
MAIL_PLUGINS = ("notify", "push_notification", "mail_lua", "push_notification_lua")
#: Every service that changes mail: deliveries (Sieve runs inside lmtp and lda), IMAP, POP3
#: and doveadm (its command line, its HTTP API and dsync). The 2.3 snippet loads the plugins
#: and the driver line in these filters only, so a service that changes no mail (submission,
#: indexer-worker, ...) never reads a driver line whose plugin it has not loaded.
PROTOCOLS = ("lmtp", "lda", "imap", "pop3", "doveadm")


@dataclass(frozen=True)
class BridgeOptions:
    """What the bridge script is told (see the settings table at the top of bridge.lua)."""

    script_path: str
    transport: str = "spool"
    spool: str = DEFAULT_SPOOL
    url: str = DEFAULT_INGRESS
    token: str | None = None
    timeout_msecs: int = 1000
    status: bool = True
    metadata: bool = True

    def lua_settings(self) -> dict[str, str]:
        """The script's settings without prefix (2.4 ``lua_settings`` keys)."""
        values = {"transport": self.transport, "spool": self.spool}
        if self.transport == "http":
            values["url"] = self.url
            values["timeout_msecs"] = str(self.timeout_msecs)
            if self.token:
                values["token"] = self.token
        if not self.status:
            values["status"] = "no"
        if not self.metadata:
            values["metadata"] = "no"
        return values


def script_source() -> str:
    """The bridge script shipped inside the package."""
    return _packaged("bridge.lua")


def bridge_settings(options: BridgeOptions) -> dict[str, str]:
    """Dovecot 2.3 ``plugin { }`` keys the bridge script reads (``push_notification_bridge_*``)."""
    return {f"push_notification_bridge_{k}": v for k, v in options.lua_settings().items()}


def driver_value(options: BridgeOptions) -> str:
    """The 2.3 ``push_notification_driver`` value that runs the bridge script."""
    return f"lua:file={options.script_path}"


def plugin_settings(options: BridgeOptions, driver_key: str = "push_notification_driver") -> dict[str, str]:
    """Dovecot 2.3 ``plugin { }`` keys that load the bridge with ``options`` (the driver line first)."""
    return {driver_key: driver_value(options), **bridge_settings(options)}


def _packaged(name: str) -> str:
    return resources.files("push_notification.dovecot").joinpath(name).read_text(encoding="utf-8")


def loader_source() -> str:
    """The file Dovecot loads: it runs the bytecode beside it, or the fallback (see loader.lua)."""
    return _packaged("loader.lua")


def fallback_source() -> str:
    """What the loader runs when the bytecode does not load: a warning, then the source."""
    return _packaged("fallback.lua")


def _write(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def install_script(directory: str | os.PathLike[str]) -> Path:
    """Install the bridge into ``directory`` (mode 0644, readable by every mail user): its
    source and the http transport's, the fallback, their bytecode when a Lua library is here,
    and last the loader Dovecot loads (returned); a stale bytecode file is removed when none
    can be made."""
    target_dir = Path(directory)
    target = target_dir / SCRIPT_NAME
    parts = [
        (script_source(), SOURCE_NAME, BYTECODE_NAME, "dovecot-bridge"),
        (_packaged("bridge_http.lua"), HTTP_SOURCE_NAME, HTTP_BYTECODE_NAME, "dovecot-bridge-http"),
    ]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        for source, source_name, bytecode_name, chunk_name in parts:
            _write(target_dir / source_name, source.encode("utf-8"))
            bytecode = compile_lua(source, chunk_name)
            if bytecode is not None:
                _write(target_dir / bytecode_name, bytecode)
            else:
                (target_dir / bytecode_name).unlink(missing_ok=True)
        _write(target_dir / FALLBACK_NAME, fallback_source().encode("utf-8"))
        _write(target, loader_source().encode("utf-8"))
    except OSError as exc:
        raise click.ClickException(
            f"cannot install the bridge script into {target_dir}: {exc.strerror or exc};"
            " run as root or choose a directory with --install-dir"
        ) from None
    return target


def detect_version() -> str:
    """``2.3`` or ``2.4`` from ``dovecot --version`` (2.3 when Dovecot is not installed here)."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "2.3"
    match = re.match(r"\s*(\d+)\.(\d+)", out)
    if match and (int(match.group(1)), int(match.group(2))) >= (2, 4):
        return "2.4"
    return "2.3"


def _conf_value(value: str) -> str:
    """A dovecot.conf value, quoted when it holds spaces or quotes."""
    if value and re.fullmatch(r"[^\s\"'#{}]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_snippet(options: BridgeOptions, version: str) -> str:
    """The dovecot.conf lines for ``version`` (``2.3`` or ``2.4``)."""
    lines = [
        "# push-notification bridge (written by: push-notification dovecot-config)",
        f"# Every service that changes mail feeds the bridge: {', '.join(PROTOCOLS)} (Sieve inside lmtp/lda).",
        "# Server METADATA (the OX http-notify key) needs mail_attribute_dict and imap_metadata = yes.",
    ]
    lines.extend(_snippet_24(options) if version == "2.4" else _snippet_23(options))
    return "\n".join(lines) + "\n"


def _snippet_24(options: BridgeOptions) -> list[str]:
    # 2.4 merges a filter's mail_plugins { } with the global list, wherever it appears in the
    # file, so one global list reaches every service; the driver block is global too.
    lines = ["mail_plugins {"]
    lines.extend(f"  {plugin} = yes" for plugin in MAIL_PLUGINS)
    lines.append("}")
    lines.append("push_notification bridge {")
    lines.append("  driver = lua")
    lines.append(f"  lua_file = {_conf_value(options.script_path)}")
    lines.append("  lua_settings {")
    lines.extend(f"    {k} = {_conf_value(v)}" for k, v in options.lua_settings().items())
    lines.append("  }")
    lines.append("}")
    return lines


def _snippet_23(options: BridgeOptions) -> list[str]:
    # 2.3: `$mail_plugins` inside a protocol filter is that filter's own earlier value (e.g.
    # `sieve` for lmtp), so the filters keep what the admin set there; a global line after
    # such a filter would be ignored there and warned about. Naming a plugin twice is harmless.
    lines = ["# With other push drivers configured, use the next free number (push_notification_driver2 ...)."]
    for protocol in PROTOCOLS:
        lines.append(f"protocol {protocol} {{")
        lines.append(f"  mail_plugins = $mail_plugins {' '.join(MAIL_PLUGINS)}")
        lines.append("  plugin {")
        lines.append(f"    push_notification_driver = {_conf_value(driver_value(options))}")
        lines.append("  }")
        lines.append("}")
    lines.append("plugin {")
    lines.extend(f"  {k} = {_conf_value(v)}" for k, v in bridge_settings(options).items())
    lines.append("}")
    return lines


def _url_warning(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return (
            f"warning: {parts.hostname} is a host name; Dovecot 2.3.19's Lua HTTP client resolves names"
            " unreliably (fixed in 2.3.20), so use the daemon's IP address"
        )
    return None


@click.command("dovecot-config")
@click.option(
    "--transport",
    type=click.Choice(["spool", "http"]),
    default="spool",
    show_default=True,
    help="spool: the daemon runs on this host; http: POST to a daemon elsewhere (spool as fallback).",
)
@click.option(
    "--url",
    default=DEFAULT_INGRESS,
    show_default=True,
    callback=ingress_url_callback,
    help="The daemon for --transport http: http://HOST:PORT or the full ingress URL (…/v1/transactions).",
)
@click.option("--token", envvar="PUSH_NOTIFICATION_TOKEN", help="Ingress token for --transport http.")
@click.option("--spool", default=DEFAULT_SPOOL, show_default=True, help="Spool directory.")
@click.option("--version", "version", type=click.Choice(["2.3", "2.4"]), help="Dovecot version (default: detect).")
@click.option("--install-dir", default=DEFAULT_INSTALL_DIR, show_default=True, help="Where to put the script.")
@click.option("--no-install", is_flag=True, help="Only print; do not install the script.")
@click.option(
    "--mail-user",
    default="vmail",
    show_default=True,
    help="The user Dovecot delivers mail as (mail_uid); the spool gets its primary group.",
)
@click.option(
    "--metadata",
    is_flag=True,
    help="Print the METADATA lines too (mail_attribute_dict, imap_metadata): OX App Suite needs them.",
)
@click.option("--timeout-msecs", default=1000, show_default=True, type=click.IntRange(50, 60000))
@click.option("--no-status", is_flag=True, help="Skip the mailbox status snapshot (no driver instance uses it).")
@click.option(
    "--no-metadata",
    is_flag=True,
    help="Skip the http-notify METADATA read (no OX or Lua instance uses it): saves opening INBOX per transaction.",
)
def dovecot_config(
    transport: str,
    url: str,
    token: str | None,
    spool: str,
    version: str | None,
    install_dir: str,
    no_install: bool,
    mail_user: str,
    metadata: bool,
    timeout_msecs: int,
    no_status: bool,
    no_metadata: bool,
) -> None:
    """Install the bridge script and print the dovecot.conf snippet that feeds the daemon."""
    if transport == "http":
        warning = _url_warning(url)
        if warning:
            click.echo(warning, err=True)
    spool = spool.rstrip("/") or "/"
    script_path = str(Path(install_dir) / SCRIPT_NAME)
    if not no_install:
        script_path = str(install_script(install_dir))
        click.echo(f"# installed {script_path}", err=True)
    options = BridgeOptions(
        script_path=script_path,
        transport=transport,
        spool=spool,
        url=url,
        token=token,
        timeout_msecs=timeout_msecs,
        status=not no_status,
        metadata=not no_metadata,
    )
    version = version or detect_version()
    group = mail_group(mail_user)
    if group is None:
        click.echo(
            f"warning: user {mail_user!r} does not exist on this host; give Dovecot's mail user"
            " (mail_uid, or the owner of the mail directories) with --mail-user",
            err=True,
        )
    click.echo(render_snippet(options, version), nl=False)
    if metadata:
        click.echo(metadata_lines(version), nl=False)
    click.echo(daemon_side(options, mail_user, group or mail_user), nl=False)


def mail_group(user: str) -> str | None:
    """The primary group of ``user`` (``nogroup`` for Debian's ``nobody``), or None when
    there is no such user here."""
    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def metadata_lines(version: str) -> str:
    """Server METADATA (the OX http-notify key, ``doveadm mailbox metadata``) needs a dict."""
    if version == "2.4":
        dict_lines = ["mail_attribute {", "  dict file {", "    path = %{home}/dovecot-attributes", "  }", "}"]
    else:
        dict_lines = ["mail_attribute_dict = file:%h/dovecot-attributes"]
    lines = ["# METADATA: per-user server attributes (OX App Suite turns push on and off with them)", *dict_lines]
    lines += ["protocol imap {", "  imap_metadata = yes", "}"]
    return "\n".join(lines) + "\n"


def daemon_side(options: BridgeOptions, mail_user: str, group: str) -> str:
    """The daemon's half, as comments: its config lines, the spool directory and the
    systemd unit's settings that let it read what Dovecot writes there."""
    spool = options.spool
    dirs = " ".join(f"{spool}/{sub}" for sub in ("tmp", "new", "bad"))
    lines = [
        "#",
        "# ---- The daemon's side (not dovecot.conf) ----",
        f"# 1. The spool: Dovecot writes {spool}/tmp, renames into {spool}/new as {mail_user} (files",
        "#    mode 0600); the daemon deletes them as a member of the group and reads them with",
        "#    CAP_DAC_READ_SEARCH (the shipped unit), or runs as the mail user. Create it:",
        f"#      install -d -o {mail_user} -g {group} -m 2770 {spool} {dirs}",
        f"# 2. {SYSTEM_CONFIG} (contrib/push-notification.conf):",
        f"#      spool_dir = {spool}",
    ]
    if options.transport == "http":
        parts = urlsplit(options.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines.append(f"#      listen = {listen}")
        if options.token:
            lines.append("#      ingress_token = <the same token as --token>")
        elif not is_loopback_host(host):
            lines.append("#      ingress_token = <a secret; Dovecot gets it with --token> (required off loopback)")
    lines += [
        "# 3. The unit (contrib/systemd/push-notification.service runs it as user push-notification):",
        "#      systemctl edit push-notification",
        "#    and add, if your mail group is not the unit's:",
        "#      [Service]",
        f"#      SupplementaryGroups={group}",
        f"#      ReadWritePaths={spool}",
        "#    (or run it as the mail user: User=" + mail_user + " and Group=" + group + ")",
        "#    then: systemctl restart push-notification; journalctl -u push-notification names the spool.",
    ]
    return "\n".join(lines) + "\n"
