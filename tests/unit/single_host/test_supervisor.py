"""llmgw.single_host's pieces: settings, the generated routing table, the restart pause, and the
supervisor itself with small Python processes as children."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from llmgw.routing import Endpoint, load_routing
from llmgw.single_host.config import load_config
from llmgw.single_host.routing_file import write_routing
from llmgw.single_host.supervisor import Backoff, ChildSpec, Supervisor, describe_exit

ENV = {"MODEL": "Qwen/Qwen2.5-7B-Instruct"}


# --- settings ---

def test_the_default_backend_is_vllm_serve_on_loopback_with_the_extra_arguments():
    config = load_config({**ENV, "VLLM_ARGS": "--max-model-len 8192 --dtype 'bfloat16'",
                          "VLLM_PORT": "8011", "MAX_NUM_SEQS": "64"})
    assert config.backend_argv() == [
        "vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--host", "127.0.0.1", "--port", "8011",
        "--served-model-name", "Qwen/Qwen2.5-7B-Instruct", "--max-num-seqs", "64",
        "--max-model-len", "8192", "--dtype", "bfloat16"]


def test_backend_command_replaces_vllm_and_fills_its_placeholders():
    config = load_config({"MODEL_ID": "/models/m", "SERVED_MODEL_NAME": "m",
                          "BACKEND_COMMAND": "sim --port {port} --name {served_model_name} "
                                             "--path={model} --lora '{\"name\": \"x\"}'"})
    assert config.backend_argv() == ["sim", "--port", "8001", "--name", "m", "--path=/models/m",
                                     "--lora", '{"name": "x"}']


def test_seed_000_names_work_too():
    config = load_config({"MODEL_ID": "m", "EXTRA_VLLM_ARGS": "--enforce-eager"})
    assert config.model == "m" and config.backend_argv()[-1] == "--enforce-eager"


def test_a_backend_key_is_made_when_none_is_given_and_redis_is_inside_by_default():
    config = load_config(ENV)
    assert len(config.backend_api_key) >= 32 and config.internal_redis
    assert config.gateway_redis_url == "redis://127.0.0.1:6379/0"
    external = load_config({**ENV, "REDIS_URL": "redis://redis.internal:6379/1"})
    assert not external.internal_redis and external.gateway_redis_url.endswith("/1")


@pytest.mark.parametrize("env, message", [
    ({}, "MODEL is required"),
    ({**ENV, "VLLM_PORT": "70000"}, "VLLM_PORT: Input should be less than 65536"),
    ({**ENV, "MODEL_ENDPOINTS": "chat,talk"}, "MODEL_ENDPOINTS: must list endpoints"),
    ({**ENV, "VLLM_ARGS": "--chat-template 'unclosed"}, "VLLM_ARGS: cannot be split"),
    ({**ENV, "BACKEND_COMMAND": "sim", "VLLM_ARGS": "-x"}, "VLLM_ARGS applies to the default"),
    ({**ENV, "REDIS_URL": "localhost:6379"}, "REDIS_URL: must start with redis://"),
    ({**ENV, "BACKEND_API_KEY": "short"}, "BACKEND_API_KEY: must be at least 16"),
    ({**ENV, "REDIS_PORT": "8001"}, "REDIS_PORT and VLLM_PORT must differ"),
    ({**ENV, "GUNICORN_CONF": "/nowhere/gunicorn.conf.py"}, "GUNICORN_CONF: file not found"),
])
def test_bad_settings_stop_with_the_variable_named(env, message):
    with pytest.raises(SystemExit) as raised:
        load_config(env)
    assert message in str(raised.value)


# --- the routing table ---

def test_the_generated_table_has_one_backend_serving_the_one_model(tmp_path):
    config = load_config({**ENV, "MODEL_ALIASES": "qwen, chat", "VLLM_PORT": "8011",
                          "MODEL_ENDPOINTS": "chat,completions,text2sql", "MAX_NUM_SEQS": "32"})
    path, table = write_routing(config, tmp_path)
    assert path.parent == tmp_path
    assert load_routing(path, env={}).models[0].name == table.models[0].name
    [pool] = table.pools.values()
    [backend] = pool.backends
    assert (backend.url, backend.max_num_seqs) == ("http://127.0.0.1:8011", 32)
    [model] = table.models
    assert (model.name, model.served_name, model.aliases) == (
        "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", ("qwen", "chat"))
    assert model.endpoints == {Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.TEXT2SQL}


def test_a_routing_file_of_ones_own_is_checked_and_used(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("pools: {}\nmodels: []\n")
    with pytest.raises(SystemExit, match="the routing table cannot be used"):
        write_routing(load_config({**ENV, "ROUTING_FILE": str(own)}), tmp_path)


# --- the restart pause ---

def test_the_pause_doubles_up_to_the_cap_and_starts_over_after_a_stable_run():
    backoff = Backoff(1, 5, stable=60)
    assert [backoff.pause(ran_secs=2) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.pause(ran_secs=61) == 1
    assert backoff.pause(ran_secs=0.5) == 2


def test_exits_are_described_with_the_signal_name():
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


# --- the supervisor, with small Python processes as children ---

def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _noting(name: str, folder: Path, *, ignore_term: bool = False, **spec) -> ChildSpec:
    """A child that sleeps and, on SIGTERM, notes its name in folder/stopped before it exits
    (or not, with `ignore_term`). It counts as ready once its handler is in place."""
    on_term = "pass" if ignore_term else "sys.exit(0)"
    marker = folder / f"{name}.ready"
    argv = _python(
        "import signal, sys, time\n"
        f"def stop(*_):\n    open({str(folder / 'stopped')!r}, 'a').write({name!r} + '\\n')\n"
        f"    {on_term}\n"
        f"signal.signal(signal.SIGTERM, stop)\nopen({str(marker)!r}, 'w').close()\n"
        "while True: time.sleep(0.05)\n")
    return ChildSpec(name, argv, {}, **{"stop_secs": 5, "ready": marker.exists, **spec})


def _run_until(supervisor: Supervisor, condition, timeout: float = 20) -> int:
    """run() with a sleep that asks it to stop once `condition()` holds (or at the timeout)."""
    deadline = time.monotonic() + timeout

    def sleep(secs: float) -> None:
        time.sleep(secs)
        if condition() or time.monotonic() > deadline:
            supervisor.request_stop()
    supervisor._sleep = sleep
    return supervisor.run()


def test_a_dying_child_is_restarted_after_its_pause_and_everything_stops_in_reverse(tmp_path):
    record, starts = tmp_path / "stopped", tmp_path / "starts"
    crashing = _python(f"open({str(starts)!r}, 'a').write('x'); import sys; sys.exit(3)")
    supervisor = Supervisor([
        _noting("first", tmp_path),
        ChildSpec("crashing", crashing, {}, stop_secs=5, backoff=Backoff(0.05, 0.2, 60)),
        _noting("last", tmp_path),
    ])
    code = _run_until(supervisor, lambda: starts.exists() and len(starts.read_text()) >= 4)
    assert code == 0
    assert len(starts.read_text()) >= 4 and supervisor.children[1].restarts >= 3
    assert record.read_text().split() == ["last", "first"]


def test_an_essential_childs_end_stops_the_others_and_exits_1(tmp_path):
    supervisor = Supervisor([
        _noting("backend", tmp_path, backoff=Backoff(1, 1, 1)),
        ChildSpec("gateway", _python("import sys; sys.exit(4)"), {}, stop_secs=5),
    ])
    assert _run_until(supervisor, lambda: False) == 1
    assert (tmp_path / "stopped").read_text().split() == ["backend"]


def test_a_child_that_ignores_sigterm_is_killed_after_its_stop_time(tmp_path):
    supervisor = Supervisor([_noting("stubborn", tmp_path, ignore_term=True, stop_secs=0.5)])
    assert _run_until(supervisor, (tmp_path / "stubborn.ready").exists) == 0
    assert (tmp_path / "stopped").read_text().split() == ["stubborn"]
    assert supervisor.children[0].popen.returncode == -signal.SIGKILL


def test_a_child_never_ready_stops_start_up_with_exit_1():
    supervisor = Supervisor([ChildSpec("redis", _python("import time; time.sleep(30)"), {},
                                       stop_secs=5, ready=lambda: False, ready_secs=0.3),
                             ChildSpec("never", _python("raise SystemExit(9)"), {}, stop_secs=5)])
    assert _run_until(supervisor, lambda: False) == 1
    assert supervisor.children[1].popen is None  # the next child was not started


def test_a_command_that_cannot_start_stops_start_up_with_exit_1(tmp_path):
    supervisor = Supervisor([ChildSpec("missing", [str(tmp_path / "no-such-binary")], {},
                                       stop_secs=5)])
    assert _run_until(supervisor, lambda: False) == 1


def test_what_a_dead_child_started_dies_with_it(tmp_path):
    """As vLLM's engine core would outlive a killed API server and hold the GPU's memory."""
    pids = tmp_path / "pids"
    leaves_one = _python("import subprocess, sys; "
                         "p = subprocess.Popen(['sleep', '30']); "
                         f"open({str(pids)!r}, 'a').write(f'{{p.pid}} '); sys.exit(3)")
    supervisor = Supervisor([ChildSpec("parent", leaves_one, {}, stop_secs=5,
                                       backoff=Backoff(0.05, 0.05, 60))])
    assert _run_until(supervisor, lambda: pids.exists() and len(pids.read_text().split()) >= 2) == 0
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while any(_running(int(pid)) for pid in pids.read_text().split()):
        assert time.monotonic() < deadline, "a process the dead child started is still running"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
