"""Placement: which replica of a pool a request goes to (keys that bind it, and the policies)."""
