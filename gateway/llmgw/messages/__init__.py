"""Anthropic's Messages API (/v1/messages) as vLLM serves it: schemas, errors, stream meter."""
