"""One host, one container: vLLM, the gateway and (unless REDIS_URL names another) Redis, started
and watched by one entrypoint, `python -m llmgw.single_host` (deploy/single/README.md).

config.py reads and checks the environment, routing_file.py writes the one-backend routing
table, supervisor.py runs the processes: the backend restarted when it dies, the gateway's own
end stopping everything.
"""
