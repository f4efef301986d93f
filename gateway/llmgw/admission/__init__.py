"""Admission: what a request may cost, the limits it must pass, and settling what it used."""
