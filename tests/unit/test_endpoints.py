"""The endpoint table: every row is routed, documented and consistent with itself."""

from llmgw.api.inference import routes
from llmgw.endpoints import BY_NAME, ENDPOINTS, SCOPE_OF
from llmgw.protocol import validate
from llmgw.routing import Endpoint


def test_names_and_paths_are_unique_and_every_model_task_has_a_scope():
    assert len(BY_NAME) == len(ENDPOINTS)
    paths = [p for e in ENDPOINTS for p in e.paths]
    assert len(paths) == len(set(paths))
    assert set(SCOPE_OF) == set(Endpoint)  # /v1/models can say which scope unlocks each
    # one scope per model task: every row a model serves needs the scope /v1/models names
    assert all(SCOPE_OF[e.serves] is e.scope for e in ENDPOINTS)


def test_usage_is_read_where_each_answer_reports_it():
    usage = {"prompt_tokens": 3, "total_tokens": 3}
    assert BY_NAME["pooling"].usage({"usage": usage}) == usage
    cohere = {"meta": {"billed_units": {"input_tokens": 5, "image_tokens": 2}}}
    assert BY_NAME["cohere_embed"].usage(cohere) == {"prompt_tokens": 7, "total_tokens": 7}
    assert BY_NAME["cohere_embed"].usage({"meta": None}) == {"prompt_tokens": 0, "total_tokens": 0}


def test_every_path_of_every_row_is_a_post_route_and_only_the_first_is_documented():
    routed = {r.path: r for r in routes().routes}
    for endpoint in ENDPOINTS:
        for i, path in enumerate(endpoint.paths):
            assert routed[path].methods == {"POST"}
            assert routed[path].include_in_schema is (i == 0)
    assert set(routed) == {p for e in ENDPOINTS for p in e.paths}


def test_each_example_is_a_valid_body_and_costs_what_its_row_says():
    for endpoint in ENDPOINTS:
        body = {"model": "m", **endpoint.example}
        validate(endpoint.request, body)  # raises on an invalid example
        tokens, prompts = endpoint.prompt(body)
        assert tokens >= 0 and prompts >= 1
        assert (endpoint.events is None) == (endpoint.output is None)  # only generations stream
