"""HTTP plumbing shared by the pages (server/web) and the JSON API (server/api).

Neither of those imports the other; what both need lives here: request and app keys,
access declarations and gates, the error body, CSRF, JSON bodies, file streaming.
"""
