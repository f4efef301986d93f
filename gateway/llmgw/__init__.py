"""llmgw: an OpenAI-compatible gateway in front of pools of vLLM servers."""

__version__ = "0.1.0"
