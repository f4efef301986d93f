"""The nginx template: rendered for the local stack and as the compose image renders it, `nginx -t`."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy_support import ROOT, mounts
from stack import edge

ENVSH = ROOT / "nginx" / "18-llm-edge.envsh"
# What the nginx image's entrypoint does: source *.envsh, then envsubst every *.template with
# only the variables that exist and match NGINX_ENVSUBST_FILTER (so nginx's $host etc. survive).
IMAGE_RENDER = r'''set -e
. "$ENVSH"
defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${NGINX_ENVSUBST_FILTER}/ ) ? name : \"\" } }" </dev/null))
envsubst "$defined_envs" < "$TEMPLATE"
'''
DERIVED = ("EDGE_UPSTREAM_SERVERS", "EDGE_ADMIN_ALLOW", "EDGE_REAL_IP_FROM",
           "EDGE_CLIENT_MAX_BODY_SIZE", "EDGE_FILES_MAX_BODY_SIZE", "EDGE_PROXY_TIMEOUT")


def nginx_t(conf: Path) -> subprocess.CompletedProcess:
    result = edge.check_config(conf)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr
    return result


def envsh_values(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["sh", "-ec", '. "$ENVSH"; env -0'], capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"], "ENVSH": str(ENVSH), **env}).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k in DERIVED}


def test_local_config_passes_nginx_t(tmp_path):
    conf = edge.render(tmp_path, ["127.0.0.1:18000", "127.0.0.1:18001"], https_port=18443,
                       http_port=18080)
    text = conf.read_text()
    assert "${" not in text
    assert "server 127.0.0.1:18000; server 127.0.0.1:18001;" in text
    assert "listen 127.0.0.1:18443 ssl default_server;" in text
    assert "return 301 https://$host:18443$request_uri;" in text
    nginx_t(conf)


def test_compose_config_passes_nginx_t(tmp_path, compose, cert_dir):
    """Render exactly as the nginx image would with compose's environment, then nginx -t it."""
    service = compose["services"]["nginx"]
    env = {k: str(v) for k, v in service["environment"].items()}
    result = subprocess.run(["sh", "-c", IMAGE_RENDER], capture_output=True, text=True, env={
        "PATH": os.environ["PATH"], "ENVSH": str(ENVSH),
        "TEMPLATE": str(ROOT / "nginx" / "templates" / "nginx.conf.template"), **env})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "${EDGE_" not in text and "$host" in text and "$remote_addr" in text
    assert "listen 443 ssl default_server;" in text and "user nginx;" in text
    assert "server gateway:8000;" in text
    assert "listen 8080;" in text  # stub_status, where docker-compose.monitoring.yml looks
    # Container paths -> this machine: the compose mounts, then what only exists in the image.
    for target, source in mounts(service).items():
        text = text.replace(target, source)
    (tmp_path / "cache").mkdir()
    text = (text.replace("user nginx;", "").replace("/run/nginx.pid", str(tmp_path / "nginx.pid"))
            .replace("/var/cache/nginx", str(tmp_path / "cache"))
            .replace("server gateway:8000;", "server 127.0.0.1:8000;"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    nginx_t(conf)


@pytest.mark.parametrize("settings", [
    {},
    {"ADMIN_ALLOW_CIDRS": "10.0.0.0/8, 192.0.2.7", "TRUSTED_PROXY_CIDRS": "172.16.0.0/12",
     "GATEWAY_UPSTREAMS": "gw1:8000,gw2:8000", "MAX_BODY_BYTES": "2097152",
     "STREAM_IDLE_TIMEOUT_SECS": "600.0", "UPSTREAM_TIMEOUT_SECONDS": "30"},
    {"MAX_REQUEST_SECS": "120"},
])
def test_compose_and_local_derive_the_same_values(settings):
    upstreams = edge._split(settings.get("GATEWAY_UPSTREAMS", "gateway:8000"))
    allow = edge._split(settings.get("ADMIN_ALLOW_CIDRS", "")) or edge.DEFAULT_ALLOW_CIDRS
    local = edge.edge_values(upstreams=upstreams, allow_cidrs=allow, settings=settings,
                             trusted_proxy_cidrs=edge._split(settings.get("TRUSTED_PROXY_CIDRS", "")))
    assert envsh_values(settings) == local


def test_proxy_timeout_outlasts_the_gateway_but_not_the_request_cap():
    values = edge.edge_values(upstreams=["g:1"], allow_cidrs=[], settings={
        "STREAM_IDLE_TIMEOUT_SECS": "180", "UPSTREAM_TIMEOUT_SECONDS": "300"})
    assert values["EDGE_PROXY_TIMEOUT"] == "360s"
    capped = edge.edge_values(upstreams=["g:1"], allow_cidrs=[], settings={"MAX_REQUEST_SECS": "200"})
    assert capped["EDGE_PROXY_TIMEOUT"] == "200s"
    assert values["EDGE_CLIENT_MAX_BODY_SIZE"] == str(1_048_576 + 65536)
    assert values["EDGE_FILES_MAX_BODY_SIZE"] == str(200 * 1024 * 1024 + 65536)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.1.2.3/8", "127.0.0.1; allow all", "all"])
def test_bad_networks_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        edge.edge_values(upstreams=["g:1"], allow_cidrs=[bad])


@pytest.mark.parametrize("bad", ["gateway", "g:1; server evil:1", "http://g:1"])
def test_bad_upstreams_are_refused(bad):
    with pytest.raises(ValueError):
        edge.edge_values(upstreams=[bad], allow_cidrs=[])


def test_self_signed_pair_is_made_once_and_fits_mozilla_intermediate(tmp_path):
    crt, key = edge.ensure_self_signed(tmp_path)
    assert (crt.name, key.name) == ("cert-fullchain.crt", "cert.key")
    assert key.stat().st_mode & 0o077 == 0
    first = crt.read_bytes()
    assert edge.ensure_self_signed(tmp_path) == (crt, key) and crt.read_bytes() == first
    text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-text", "-dates"],
                          capture_output=True, text=True, check=True).stdout
    assert "prime256v1" in text and "ecdsa-with-SHA256" in text
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    start, end = (dt.datetime.strptime(re.search(rf"{k}=(.*)", text)[1], "%b %d %H:%M:%S %Y %Z")
                  for k in ("notBefore", "notAfter"))
    assert (end - start).days <= 366  # the profile's maximum certificate lifespan


def test_expiring_certificate_is_replaced(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-days", "1", "-nodes", "-subj", "/CN=old",
                    "-keyout", tmp_path / "cert.key", "-out", tmp_path / "cert-fullchain.crt"],
                   capture_output=True, check=True)
    old = (tmp_path / "cert-fullchain.crt").read_bytes()
    crt, _ = edge.ensure_self_signed(tmp_path)
    assert crt.read_bytes() != old


def test_nginx_argv_runs_in_the_foreground_without_var_paths(tmp_path):
    argv = edge.nginx_argv(tmp_path / "nginx.conf")
    assert Path(argv[0]).name == "nginx" and shutil.which(argv[0])
    assert argv[-2:] == ["-g", "daemon off;"] and ["-e", "stderr"] == argv[5:7]


def test_the_gateways_own_client_limits_default_to_nginxs():
    """What nginx lets through, the gateway's port takes too, and with the same patience."""
    from llmgw.settings import Settings
    text = (ROOT / "nginx" / "templates" / "nginx.conf.template").read_text()
    count, kib = re.search(r"large_client_header_buffers (\d+) (\d+)k;", text).groups()
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["client_max_header_bytes"] == int(count) * int(kib) * 1024
    for directive in ("client_header_timeout", "client_body_timeout"):
        found = re.search(rf"{directive} (\d+)s;", text)
        assert defaults[f"{directive}_secs"] == (int(found.group(1)) if found else 60)  # nginx's default
