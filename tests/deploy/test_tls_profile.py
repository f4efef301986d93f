"""sslyze finds the running nginx compliant with Mozilla's "intermediate" TLS profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stacks import free_port


def sslyze(port: int, ca: Path) -> subprocess.CompletedProcess:
    # The CA file makes the self-signed certificate's chain valid (part of the compliance check).
    return subprocess.run([sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
                           f"--certinfo_ca_file={ca}", f"localhost:{port}{{127.0.0.1}}"],
                          capture_output=True, text=True, timeout=240)


def rsa_pair(folder: Path) -> Path:
    """A 2048-bit RSA pair, as many CA-issued certificates are: exercises the DHE suites too."""
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "90",
                    "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-keyout", folder / "cert.key", "-out", folder / "cert-fullchain.crt"],
                   capture_output=True, check=True)
    return folder


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_mozilla_intermediate_compliant(edges, tmp_path, key_type):
    cert_dir = rsa_pair(tmp_path / "rsa") if key_type == "rsa" else None
    running = edges([f"127.0.0.1:{free_port()}"], cert_dir=cert_dir)
    result = sslyze(running.https_port, running.ca)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "OK - Compliant" in result.stdout
    assert "TLSv1.3" in result.stdout or "TLS 1.3" in result.stdout
