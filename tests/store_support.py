"""Postgres stores for tests: a fresh schema per store on the session's server (tests/conftest.py)."""
from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

# in every test URL: the server trusts local connections and ignores it, so tests can look for leaks
PASSWORD = "s3cret-Pw"


def postgres_schema_url(server) -> str:
    """A URL (user, password, a search_path of its own) whose store starts empty."""
    import psycopg

    base = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    schema = "t" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(base)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:{PASSWORD}@{host}", parts.path,
                       f"{parts.query}&options=-csearch_path%3D{schema}", ""))
