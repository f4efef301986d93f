"""Settings are validated once, and bad ones stop start-up with a readable message."""

import pytest

from llmgw.settings import load_settings


def test_defaults_follow_the_seeds(monkeypatch):
    for var in ("MAX_BODY_BYTES", "HTTP_MAX_CONNECTIONS", "HTTP_MAX_KEEPALIVE"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.max_body_bytes, s.http_max_connections, s.http_max_keepalive) == (1048576, 3000, 800)
    assert (s.max_request_secs, s.stream_idle_timeout_secs) == (5400, 180)


@pytest.mark.parametrize("var,value,expected", [
    ("GATEWAY_WORKERS", "0", "GATEWAY_WORKERS"),
    ("GATEWAY_PORT", "http", "GATEWAY_PORT"),
    ("MAX_BODY_BYTES", "-1", "MAX_BODY_BYTES"),
    ("ROUTING_FILE", "/nonexistent/routing.yaml", "routing file not found"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL"),
    ("HTTP_MAX_KEEPALIVE", "5000", "cannot exceed"),
    ("CLIENT_MAX_HEADER_BYTES", "1024", "CLIENT_MAX_HEADER_BYTES"),
    ("CLIENT_MAX_HEADER_FIELDS", "0", "CLIENT_MAX_HEADER_FIELDS"),
    ("CLIENT_HEADER_TIMEOUT_SECS", "0", "CLIENT_HEADER_TIMEOUT_SECS"),
    ("CLIENT_BODY_TIMEOUT_SECS", "soon", "CLIENT_BODY_TIMEOUT_SECS"),
    ("BACKEND_API_KEY", "fifteen-chars-x", "BACKEND_API_KEY must be at least 16 characters"),
    ("ADMIN_TOKEN", "fifteen-chars-x", "ADMIN_TOKEN must be at least 16 characters"),
    ("BACKEND_METRICS_INTERVAL_SECS", "0.01", "BACKEND_METRICS_INTERVAL_SECS must be 0 (off)"),
    ("BACKEND_METRICS_INTERVAL_SECS", "-1", "BACKEND_METRICS_INTERVAL_SECS"),
])
def test_bad_settings_exit_with_the_setting_named(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exc:
        load_settings()
    assert "invalid gateway settings" in str(exc.value) and expected in str(exc.value)


def test_every_setting_is_documented_in_env_example():
    import re
    from pathlib import Path

    from llmgw.settings import Settings
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", text, re.M))
    assert {f.upper() for f in Settings.model_fields} <= documented
    # each setting (or a group of related ones) has its line of meaning just above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            above = next(prev for prev in reversed(lines[:i]) if not re.match(r"^[A-Z_][A-Z0-9_]*=", prev))
            assert above.startswith("#") and len(above) > 3, line


def test_seed_002_names_set_the_defaults_too(monkeypatch):
    monkeypatch.setenv("ORG_DAILY_TOKEN_LIMIT", "7000000")
    monkeypatch.setenv("MAX_RPS_PER_IP", "25")
    monkeypatch.setenv("MAX_INFLIGHT_PER_IP", "120")
    s = load_settings()
    assert (s.default_daily_token_limit, s.default_rps, s.default_max_concurrent) == (7_000_000, 25, 120)
    assert s.default_limits().daily_token_limit == 7_000_000
