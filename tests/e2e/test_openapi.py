"""The OpenAPI document and its pages against a running gateway: schemathesis fuzzes every
operation from the document, and /docs and /redoc must render with nothing from another host.

Every request is generated from /openapi.json (valid bodies and, in negative mode, requests the
document forbids) and sent to a real gunicorn gateway over simulated backends. Each answer
must be no 500 and have a documented status, content type and body schema, and a request the
document forbids must be refused. Examples are derandomised (the same every run) and bounded, to
stay well under two minutes on two busy cores. Schemathesis' pytest plugin (`from_fixture`) does
not run on this pytest, so the operations are driven here with its strategies and checks.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import schemathesis.checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode

from stacks import TestStack

from llmgw.endpoints import ENDPOINTS
from llmgw.routing import Endpoint

INFERENCE_PATHS = {p for e in ENDPOINTS for p in e.paths}

CHECKS = [getattr(schemathesis.checks, name) for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "negative_data_rejection")]
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 30}
ADMIN_EXAMPLES = 60


def _valid_data_accepted(ctx, response, case):
    """positive_data_acceptance (what the document allows is not refused with a 400), less the
    refusals no JSON schema can state: a first key's limits above its new organisation's, and
    a model pattern that matches no model (the public document names none)."""
    if response.status_code == 400 and response.json()["error"]["code"] in (
            "limit_above_org", "unknown_model"):
        return None
    return schemathesis.checks.positive_data_acceptance(ctx, response, case)


# The admin API once refused 2117.0 where its document says integer, and any time zone it did
# not know where the document said string.
ADMIN_CHECKS = [*CHECKS[:-1], _valid_data_accepted]
# Operations guarded by the admin token; every other one is called with the org's API key.
ADMIN_PATHS = ("/admin/", "/metrics", "/health/detailed")
# Generous limits: the fuzzer's few hundred requests must meet the API, not the rate limiter.
LIMITS = {"rpm_limit": 1_000_000, "tpm_limit": 10**10, "rps": 100_000, "burst": 1_000_000,
          "max_concurrent": 1000, "max_output_tokens": 64}


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("fuzz-stack"), workers=2,
                      sim_args=("--ttft-ms", "1", "--itl-ms", "0")).start()
    yield stack
    stack.stop()


def _failures(operation, mode: GenerationMode, headers: dict[str, str], *,
              checks=tuple(CHECKS), examples: int | None = None) -> list[str]:
    """Every distinct failure of one operation in one generation mode, one line each."""
    found: dict[str, str] = {}

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples or EXAMPLES[mode], deadline=None,
                         derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    def run(case) -> None:
        try:
            # Keep-alive connections, reused as a client would: this test found a backend
            # connection returned to its pool with reading paused (a later request on it hung).
            case.call_and_validate(headers=headers, checks=list(checks), timeout=30)
        except (Failure, FailureGroup) as exc:
            for failure in getattr(exc, "exceptions", (exc,)):
                detail = (failure.message.strip().splitlines() or [""])[0][:300]
                summary = f"{failure.title}: {detail}"
                found.setdefault(summary, f"{operation.label} [{mode.value}] {summary}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to break: no body, and no parameter but free-form path strings.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return list(found.values())


def test_every_operation_answers_as_documented(fuzzed_stack: TestStack):
    api_key = fuzzed_stack.create_org(**LIMITS)["api_key"]
    schema = _schema(fuzzed_stack)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        token = fuzzed_stack.admin_token if operation.path.startswith(ADMIN_PATHS) else api_key
        for mode in EXAMPLES:
            failures += _failures(operation, mode, {"Authorization": f"Bearer {token}"})
    assert operations >= 20
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)


def test_what_the_admin_document_allows_is_accepted(fuzzed_stack: TestStack):
    """Schemathesis' positive-data check on every admin operation: a body the document allows
    is never a 400 (404 for a generated id, 409 for a taken name are fine)."""
    schema = _schema(fuzzed_stack)
    headers = {"Authorization": f"Bearer {fuzzed_stack.admin_token}"}
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/admin/"):
            operations += 1
            failures += _failures(operation, GenerationMode.POSITIVE, headers,
                                  checks=ADMIN_CHECKS, examples=ADMIN_EXAMPLES)
    assert operations >= 10
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)


def _schema(stack: TestStack):
    """The public document, with each request schema's `model` narrowed to the names GET
    /v1/models gives the test key for its endpoint: the fuzzer then reaches the backends (the
    document itself names no model, and a random name is a 404)."""
    config = SchemathesisConfig.from_dict({"base-url": stack.base_url})
    document = httpx.get(stack.base_url + "/openapi.json", timeout=10).json()
    cards = httpx.get(stack.base_url + "/v1/models", headers=stack.auth, timeout=10).json()["data"]
    for endpoint in ENDPOINTS:
        names = [n for c in cards if endpoint.serves.value in c["endpoints"]
                 for n in (c["id"], *c["aliases"])]
        document["components"]["schemas"][endpoint.request.__name__]["properties"]["model"][
            "enum"] = names
    return schemathesis.openapi.from_dict(document, config=config)


def test_the_public_document_names_no_model(fuzzed_stack: TestStack):
    text = httpx.get(fuzzed_stack.base_url + "/openapi.json", timeout=10).text
    cards = httpx.get(fuzzed_stack.base_url + "/v1/models", headers=fuzzed_stack.auth,
                      timeout=10).json()["data"]
    words = {e.value for e in Endpoint}  # "text2sql" is an alias here, and also a scope's name
    assert cards and not [n for c in cards for n in (c["id"], *c["aliases"])
                          if f'"{n}"' in text and n not in words]


# Every URL a page names: attributes (src, href, spec-url) and the Swagger UI config's `url: '...'`.
PAGE_URLS = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_gateway_itself(fuzzed_stack: TestStack, page: str):
    base = fuzzed_stack.base_url
    html = httpx.get(base + page, timeout=30)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    urls = [a or b for a, b in PAGE_URLS.findall(html.text)]
    assert len(urls) >= 3, urls  # the UI's script, its stylesheet or favicon, and the document
    for url in urls:
        absolute = urljoin(base + page, url)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, f"{page} loads {url} from another host"
        asset = httpx.get(absolute, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 0, (url, asset.status_code)


def test_what_the_document_forbids_is_refused_and_what_is_refused_is_documented(fuzzed_stack: TestStack):
    """Cases a bounded fuzzer reaches only by luck, pinned: each was a mismatch once."""
    base, api_key = fuzzed_stack.base_url, fuzzed_stack.create_org(**LIMITS)["api_key"]
    spec = httpx.get(base + "/openapi.json", timeout=30).json()
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for field, value in [("temperature", "0.5"), ("top_p", True), ("frequency_penalty", "1")]:
        resp = httpx.post(base + "/v1/chat/completions", json={**chat, field: value},
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == field, (field, resp.text)
    admin = {"Authorization": f"Bearer {fuzzed_stack.admin_token}"}
    for path in ["/admin/orgs?offset=99999999999999999999", "/admin/audit?before=99999999999999999999-0"]:
        resp = httpx.get(base + path, headers=admin, timeout=30)
        assert resp.status_code == 400, (path, resp.text)  # the client's mistake, not Redis failing
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert "422" not in op["responses"], f"{method} {path}: errors are 400, never 422"
            if path.startswith("/v1/"):
                assert {"401", "403", "503"} <= set(op["responses"]), f"{method} {path}"
                assert op.get("security"), f"{method} {path} documents no authentication"
            if method == "post" and path in INFERENCE_PATHS:  # admitted: rate limits apply
                assert "429" in op["responses"], f"{method} {path}"
