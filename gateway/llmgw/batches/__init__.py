"""Batch jobs: the OpenAI Batch API's jobs (and seed 001/004's batch completions), their
durable work queue in Redis, and the runner process that executes each input line through the
gateway's own request path, on capacity realtime traffic leaves free."""
