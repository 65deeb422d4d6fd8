"""The pages a new user opens first work without internet: /docs, /redoc and the console load nothing from a CDN.
In-process over the Ingress's FastAPI app (its routes need a cluster; these pages and their assets do not)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from serve.ingress import app
from serve.schemas import VERSION

REFERENCED = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(app)


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/console/"])
def test_every_asset_a_page_references_is_served_by_the_app(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assets = [url for url in REFERENCED.findall(html.text) if not url.startswith("#")]
    assert assets, html.text
    assert not [url for url in assets if "://" in url or url.startswith("//")], "a page loads from another host"
    for url in assets:
        absolute = url if url.startswith("/") else page.rstrip("/") + "/" + url
        assert client.get(absolute).status_code == 200, absolute


def test_the_openapi_document_names_the_package_version(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["version"] == VERSION
