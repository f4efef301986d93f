"""The operator console at /dashboard: sign-in sessions (sessions.py), the credential they
stand for on the admin and monitoring APIs (credentials.py), and the page (api_router.py)."""
