"""Tenancy: organisations, API keys and their scopes, kept in Redis."""
