"""Deployment fixtures: the resolved compose file, and nginx edges started in front of a gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy_support import BACKEND_KEY, Edge, compose_project, run_compose_config, start_edge, stop_edge
from stack import edge


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    edge.ensure_self_signed(folder)
    return folder


@pytest.fixture(scope="session")
def compose(tmp_path_factory, cert_dir) -> dict:
    """docker-compose.yml as compose resolves it, with a test .env and TLS_CERT_DIR."""
    project = compose_project(tmp_path_factory.mktemp("compose"),
                              [f"BACKEND_API_KEY={BACKEND_KEY}", "ADMIN_TOKEN=" + "a" * 32])
    result = run_compose_config(project, TLS_CERT_DIR=str(cert_dir))
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr.upper(), result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def edges(tmp_path_factory):
    """Start nginx edges on demand; every one is stopped at the end of the session."""
    started: list[Edge] = []

    def make(upstreams: list[str], **render_kwargs) -> Edge:
        running = start_edge(tmp_path_factory.mktemp("edge"), upstreams, **render_kwargs)
        started.append(running)
        return running

    yield make
    for running in started:
        stop_edge(running)


@pytest.fixture(scope="session")
def gateway_edge(edges, sim_stack) -> Edge:
    """nginx in front of the simulator stack's gateway, /admin allowed from loopback."""
    return edges([f"127.0.0.1:{sim_stack.cfg.gateway_port}"])

