"""/docs and /redoc work offline: every script, style sheet and icon they load comes from the service."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_nothing_from_another_host(api, page):
    r = api.get(page)
    assert r.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)  # Swagger UI's openapi.json
    assert urls, "no assets found: the page format changed"
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        assert api.get(url).status_code == 200, url
