"""The nginx TLS edge for the local stack: self-signed certificate, config rendering, argv; stdlib only.

The template (nginx/templates/nginx.conf.template) is the one compose uses; there the nginx
image renders it with envsubst after nginx/18-llm-edge.envsh has derived the EDGE_* values.
`edge_values` derives the same values here, so both deployments run the same config.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx" / "templates" / "nginx.conf.template"
DHPARAM = ROOT / "nginx" / "ffdhe2048.pem"
# Seed 002's file names, in the mounted certificate folder.
CERT_NAME, KEY_NAME = "cert-fullchain.crt", "cert.key"
# Loopback and the private ranges: the operator's own networks (the admin API also needs its token).
DEFAULT_ALLOW_CIDRS = ("127.0.0.1/32", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
# Mozilla's intermediate profile allows certificates of at most 366 days.
CERT_DAYS = 365
RENEW_BEFORE_SECS = 30 * 86400
_PLACEHOLDER = re.compile(r"\$\{(EDGE_[A-Z0-9_]+)\}")
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")


def ensure_self_signed(cert_dir: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
                       ) -> tuple[Path, Path]:
    """(certificate, key) in cert_dir, made with the openssl CLI unless a valid pair is there.

    ECDSA P-256, SHA-256, 365 days, renewed when it expires within 30 days."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    crt, key = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    if crt.is_file() and key.is_file() and _valid_for(crt, RENEW_BEFORE_SECS):
        return crt, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl not found; install it (Debian package 'openssl')")
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    tmp_key, tmp_crt = key.with_suffix(".key.tmp"), crt.with_suffix(".crt.tmp")
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-sha256", "-days", str(CERT_DAYS), "-nodes", "-keyout", str(tmp_key), "-out", str(tmp_crt),
         "-subj", "/CN=localhost", "-addext", f"subjectAltName={san}",
         # A leaf, not a CA: strict verifiers (Python 3.13+) reject a CA certificate as a server's.
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature", "-addext", "extendedKeyUsage=serverAuth"],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate:\n{result.stderr[-2000:]}")
    os.chmod(tmp_key, 0o600)
    tmp_key.replace(key)  # the key first: a crash between the two leaves no cert without its key
    tmp_crt.replace(crt)
    return crt, key


def _valid_for(crt: Path, secs: int) -> bool:
    result = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-checkend", str(secs)],
                            capture_output=True)
    return result.returncode == 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _cidrs(values: Iterable[str]) -> list[str]:
    """Networks as written, once validated: anything else would land in nginx's config as code."""
    cidrs = [v.strip() for v in values if v.strip()]
    for cidr in cidrs:
        ipaddress.ip_network(cidr)  # ValueError for junk, and for host bits set ("10.1.2.3/8")
    return cidrs


def _split(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text) if part]


def _secs(value: str) -> int:
    return int(float(value))


def edge_values(*, upstreams: Iterable[str], allow_cidrs: Iterable[str],
                trusted_proxy_cidrs: Iterable[str] = (), settings: Mapping[str, str] | None = None,
                ) -> dict[str, str]:
    """The EDGE_* values derived from settings: what nginx/18-llm-edge.envsh computes in compose."""
    settings = settings or {}
    servers = list(upstreams)
    if not servers:
        raise ValueError("at least one gateway upstream (host:port) is needed")
    for server in servers:
        if not _HOSTPORT.match(server):
            raise ValueError(f"upstream must be host:port, not {server!r}")
    body = int(settings.get("MAX_BODY_BYTES") or 1_048_576)
    files = int(settings.get("FILES_MAX_BYTES") or 209_715_200)
    idle = _secs(settings.get("STREAM_IDLE_TIMEOUT_SECS") or "180")
    wait = _secs(settings.get("UPSTREAM_TIMEOUT_SECONDS") or "300")
    cap = _secs(settings.get("MAX_REQUEST_SECS") or "5400")
    return {
        "EDGE_UPSTREAM_SERVERS": " ".join(f"server {s};" for s in servers),
        "EDGE_ADMIN_ALLOW": " ".join(f"allow {c};" for c in _cidrs(allow_cidrs)),
        "EDGE_REAL_IP_FROM": " ".join(f"set_real_ip_from {c};" for c in _cidrs(trusted_proxy_cidrs)),
        # 64 KiB of slack: bodies just over the limit reach the gateway, which answers 413 itself.
        "EDGE_CLIENT_MAX_BODY_SIZE": str(body + 65536),
        # File uploads: FILES_MAX_BYTES of file plus the multipart framing.
        "EDGE_FILES_MAX_BODY_SIZE": str(files + 65536),
        "EDGE_PROXY_TIMEOUT": f"{min(max(idle, wait) + 60, cap)}s",
    }


def render(state_dir: Path, upstreams: list[str], *, https_port: int = 8443, http_port: int = 8080,
           allow_cidrs: Iterable[str] | None = None, settings: Mapping[str, str] | None = None,
           cert_dir: Path | None = None, listen_host: str = "127.0.0.1") -> Path:
    """Write <state_dir>/nginx/nginx.conf for a foreground, non-root nginx; return its path.

    settings: the platform's settings (.env): MAX_BODY_BYTES, FILES_MAX_BYTES, STREAM_IDLE_TIMEOUT_SECS,
    UPSTREAM_TIMEOUT_SECONDS, MAX_REQUEST_SECS, ADMIN_ALLOW_CIDRS, TRUSTED_PROXY_CIDRS.
    allow_cidrs overrides ADMIN_ALLOW_CIDRS. The certificate comes from cert_dir (seed 002's
    names), default <state_dir>/certs with a self-signed pair made on first use."""
    settings = settings or {}
    if allow_cidrs is None:
        allow_cidrs = _split(settings.get("ADMIN_ALLOW_CIDRS", "")) or DEFAULT_ALLOW_CIDRS
    if cert_dir is None:
        crt, key = ensure_self_signed(state_dir / "certs")
    else:
        crt, key = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    home = state_dir / "nginx"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    host = f"[{listen_host}]" if ":" in listen_host else listen_host
    status_socket = _socket_path(home / "status.sock")
    # A killed nginx leaves its socket behind, and the next one could not bind it.
    status_socket.unlink(missing_ok=True)
    values = {
        # As root, nginx's workers run as its compiled-in default (nobody); as anyone else, as
        # that user. Either way no worker needs to write a file (see client_body_buffer_size).
        "EDGE_USER_LINE": "",
        "EDGE_PID_FILE": str(home / "nginx.pid"),
        "EDGE_TEMP_DIR": str(home / "tmp"),
        "EDGE_ACCESS_LOG": str(state_dir / "logs" / "nginx-access.log"),
        "EDGE_WORKER_CONNECTIONS": "512",  # under the usual 1024 open-file limit of a shell
        "EDGE_CERT": str(crt),
        "EDGE_CERT_KEY": str(key),
        "EDGE_DHPARAM": str(DHPARAM),
        "EDGE_HTTPS_LISTEN": f"{host}:{https_port}",
        "EDGE_HTTP_LISTEN": f"{host}:{http_port}",
        "EDGE_HTTPS_REDIRECT_PORT": "" if https_port == 443 else f":{https_port}",
        "EDGE_STATUS_LISTEN": f"unix:{status_socket}",
        **edge_values(upstreams=upstreams, allow_cidrs=allow_cidrs, settings=settings,
                      trusted_proxy_cidrs=_split(settings.get("TRUSTED_PROXY_CIDRS", ""))),
    }
    conf = home / "nginx.conf"
    conf.write_text(substitute(TEMPLATE.read_text(), values))
    return conf


def _socket_path(wanted: Path) -> Path:
    """wanted, or a short stand-in in the temp folder: unix socket paths stop at 107 bytes."""
    if len(str(wanted)) <= 100:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"llm-edge-{digest}.sock"


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace ${EDGE_*} as envsubst does; a placeholder without a value is an error here."""
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def nginx_binary() -> str:
    """nginx from PATH or Debian's /usr/sbin (not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx not found; install it (Debian package 'nginx')")
    return found


def nginx_argv(conf_path: Path) -> list[str]:
    """argv running nginx in the foreground on conf_path (stop it with SIGTERM or SIGQUIT).

    -p and -e keep every path, even start-up errors before the config is read, out of /var."""
    return [nginx_binary(), "-p", str(conf_path.parent), "-c", str(conf_path), "-e", "stderr",
            "-g", "daemon off;"]


def check_config(conf_path: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on conf_path; returncode 0 when valid, the reasons in stderr."""
    argv = nginx_argv(conf_path)
    return subprocess.run(argv[:-2] + ["-t"], capture_output=True, text=True)


def health_url(http_port: int = 8080, host: str = "127.0.0.1") -> str:
    """Plain-HTTP liveness URL answered by nginx itself (no certificate needed to probe it)."""
    return f"http://{host}:{http_port}/nginx-health"
