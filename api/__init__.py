"""The HTTP API (FastAPI, async): operators, apps and residents read the city's data here."""
