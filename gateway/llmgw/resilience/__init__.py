"""Resilience: circuit breakers, retries with a budget, and the fair admission queue."""
