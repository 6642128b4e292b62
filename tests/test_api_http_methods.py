"""HTTP methods at the front door: HEAD wherever GET is served, a 405 that lists every method the path takes."""
from __future__ import annotations

import httpx

from tests.api_support import TOKEN, live_server, new_model

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_head_answers_wherever_get_does_with_the_headers_and_no_body(api):
    """Uptime monitors and load balancers probe with HEAD (`curl -I` too): a 405 reads as 'down'."""
    for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/gpt-4-1106-preview",
                 "/v1/outcomes/stats"):
        got, head = api.get(path), api.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code, head.text)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if path != "/metrics":  # the counters move between the two requests
            assert head.headers["content-length"] == got.headers["content-length"], path
    missing = api.head("/v1/models/no-such-model")
    assert missing.status_code == 404 and missing.content == b""


def test_head_is_refused_where_get_is(api):
    r = api.head("/v1/select")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""


def test_a_405_lists_every_method_the_path_takes(api):
    """POST /v1/models/NAME is a wrong method; the Allow header must offer GET, PUT and DELETE, not only
    the first route's GET."""
    r = api.post("/v1/models/gpt-4-1106-preview", json=new_model("x"), headers=AUTH)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, HEAD, PUT, DELETE"
    assert "POST" in r.json()["detail"] and "GET, HEAD, PUT, DELETE" in r.json()["detail"]


def test_head_on_a_real_server_answers_headers_only(registry_dir, tiny_predictor):
    from pickwise.api.http.app import create_app
    from pickwise.api.http.settings import ServiceSettings

    app = create_app(registry_dir, predictor=tiny_predictor, settings=ServiceSettings(
        job_store=str(registry_dir.parent / "jobs.sqlite")))
    with live_server(app) as url:
        r = httpx.head(f"{url}/healthz")
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
