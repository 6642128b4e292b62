"""HTTP methods and paths at the front door: HEAD wherever GET is served, a 405 that lists every
method the path takes, and a trailing slash on /v1/models/ treated as on every other route."""
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


def test_a_trailing_slash_on_v1_models_redirects_like_every_route(api):
    """`POST /v1/models/` was a 405 (the NAME route matched an empty name) and `GET /v1/models/` a 404
    "unknown model ''", where `/v1/select/` and the others redirect to the path without the slash."""
    for method in ("GET", "POST"):
        r = api.request(method, "/v1/models/", json=new_model("slash-model"), headers=AUTH, follow_redirects=False)
        assert r.status_code == 307, (method, r.status_code, r.text)
        assert r.headers["location"].endswith("/v1/models"), r.headers["location"]
    added = api.post("/v1/models/", json=new_model("slash-model"), headers=AUTH)  # the client follows it
    assert added.status_code == 201 and added.json()["model"]["name"] == "slash-model"
    assert "slash-model" in {m["name"] for m in api.get("/v1/models/").json()["models"]}


def test_head_on_a_real_server_answers_headers_only(registry_dir, tiny_predictor):
    from pickwise.api.http.app import create_app
    from pickwise.api.http.settings import ServiceSettings

    app = create_app(registry_dir, predictor=tiny_predictor, settings=ServiceSettings(
        job_store=str(registry_dir.parent / "jobs.sqlite")))
    with live_server(app) as url:
        r = httpx.head(f"{url}/healthz")
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0


def test_a_compressed_body_is_refused_saying_so(api):
    """A gzip body was read as text: "request body is not UTF-8 text (byte 1); send JSON", a puzzle to a
    client that sent valid JSON, compressed. The server reads no Content-Encoding: 415 naming it."""
    import gzip

    body = gzip.compress(b'{"prompt": "hi"}')
    for path, extra in (("/v1/select", {}), ("/v1/models", AUTH), ("/v1/feedback", AUTH)):
        r = api.post(path, content=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                                  **extra})
        assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type", (path, r.text)
        assert "Content-Encoding 'gzip'" in r.json()["detail"], r.json()
    plain = api.post("/v1/select", content=b'{"prompt": "hi"}',
                     headers={"Content-Type": "application/json", "Content-Encoding": "identity"})
    assert plain.status_code == 200, plain.text
