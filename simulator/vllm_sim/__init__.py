"""vllm_sim: a fast, deterministic stand-in for vLLM 0.32's OpenAI-compatible HTTP server."""

__version__ = "0.1.0"
