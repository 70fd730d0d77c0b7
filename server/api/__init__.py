"""The JSON API under /api/v1, an aiohttp sub-app with its own access gate (A5, A25)."""
