"""Who may call what, and the ways a user calls: admin tokens, API keys and their quotas, the Python client, the MCP
tools and the console in a real browser."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.adapters.label_log import read_labels
from serve.schemas import VERSION
from tests.serve.app.served import (
    ADMIN_TOKEN,
    BILLING,
    OWNER_KEY,
    REQUESTS,
    TIGHT_KEY,
    Served,
)
from tests.support import FIXTURES, poll

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing credentials"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401, "missing credentials"),
        ({"Authorization": "Bearer not-the-token"}, 403, "wrong admin token"),
    ],
)
def test_admin_endpoints_refuse_missing_or_wrong_tokens(
    served: Served, headers: dict[str, str], status: int, message: str
) -> None:
    for method, path in (("POST", "/admin/retrain"), ("GET", "/admin/retrain/retrain-x")):
        response = httpx.request(method, served.base + path, headers=headers, timeout=30)
        assert response.status_code == status and message in response.json()["detail"], response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_api_keys_quotas_and_owned_predictions(served: Served) -> None:
    """Unknown keys are refused; a key over its rate or its spec cap gets 429 with Retry-After; a prediction made
    with a key can be labelled with that key only."""
    for headers in ({"X-API-Key": "os_nobody"}, {"Authorization": "Bearer os_nobody"}):
        refused = served.post("/predict", {"user_id": "u", "spec": BILLING}, headers=headers)
        assert refused.status_code == 401 and "unknown API key" in refused.json()["detail"]

    tight = {"X-API-Key": TIGHT_KEY}
    first = served.post("/specs", {"spec": BILLING}, headers=tight)
    assert first.status_code == 201, first.text
    second = served.post("/specs", {"spec": (FIXTURES / "pets_swagger2.yaml").read_text()}, headers=tight)
    assert second.status_code == 429 and "registered 1 distinct specs" in second.json()["detail"]
    assert int(second.headers["Retry-After"]) >= 1
    spec_id = first.json()["spec_id"]
    burst = [httpx.get(f"{served.base}/specs/{spec_id}", headers=tight) for _ in range(10)]
    limited = [r for r in burst if r.status_code == 429]
    print(f"tight key, 10 requests right after its burst: {len(limited)} answered 429")
    assert len(limited) >= 8 and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert "over 1 requests/s" in limited[0].json()["detail"]

    owner = {"X-API-Key": OWNER_KEY}
    made = served.post("/predict", {"user_id": "u", "spec_id": spec_id}, headers=owner).json()["prediction_id"]
    anonymous = served.post("/feedback", {"prediction_id": made, "none": True})
    assert anonymous.status_code == 404 and "for this API key" in anonymous.json()["detail"]
    assert served.post("/feedback", {"prediction_id": made, "none": True}, headers=owner).status_code == 202


def test_the_python_client_predicts_labels_and_waits_out_quotas(served: Served) -> None:
    """`client.OpenSesame` and `client.AsyncOpenSesame` against the app: typed answers, the service's errors as
    ApiError, and a key over its rate served anyway, each 429 retried after its Retry-After."""
    from client import ApiError, AsyncOpenSesame, Event, OpenSesame

    with OpenSesame(served.base) as api:
        spec = api.register_spec(spec=BILLING)
        assert spec.spec_id in {listed.spec_id for listed in api.specs()}
        answer = api.predict(user_id="client", spec_id=spec.spec_id, prompt="pay it", k=3,
                             events=[Event(endpoint="GET /v1/invoices/in_7")])
        assert answer.predictions[0].endpoint == "POST /invoices/{invoice}/pay"
        assert answer.predictions[0].params == {"invoice": "in_7"} and answer.model_version
        label = api.feedback(answer.prediction_id, called="POST /v1/invoices/in_7/pay")
        assert (label.outcome, label.rank) == ("called", 1)
        # The whole request, typed: a name and a flag the prompt said, in the body of the call it belongs to.
        created = api.predict(user_id="client", spec=REQUESTS, prompt="create a new private repository called demo",
                              k=50)
        repo = next(p for p in created.predictions if p.endpoint == "POST /user/repos")
        assert (repo.body, repo.filled_from, repo.missing) == ({"name": "demo", "private": True},
                                                               {"name": "prompt", "private": "prompt"}, [])
        assert api.ready().ready is True
        with pytest.raises(ApiError) as unknown:
            api.spec("0" * 64)
        assert unknown.value.status == 404 and unknown.value.detail
    with pytest.raises(ValueError, match="exactly one of spec_url, spec or spec_id"):
        OpenSesame(served.base).predict(user_id="client")  # refused before it is sent

    started = time.monotonic()
    with OpenSesame(served.base, api_key=TIGHT_KEY, retries=8) as tight:  # 1 request/s after a burst of 3
        answers = [tight.spec(spec.spec_id) for _ in range(6)]
    assert [a.spec_id for a in answers] == [spec.spec_id] * 6
    assert time.monotonic() - started >= 2.0  # the quota's pace, kept by waiting, not by failing

    async def concurrently() -> list[str]:
        async with AsyncOpenSesame(served.base) as api:
            calls = [
                api.predict(user_id=f"async-{i}", spec_id=spec.spec_id, prompt="pay it", k=1,
                            events=[Event(endpoint=f"GET /v1/invoices/in_{i}")])
                for i in range(8)
            ]
            return [a.predictions[0].path for a in await asyncio.gather(*calls)]

    assert asyncio.run(concurrently()) == [f"/v1/invoices/in_{i}/pay" for i in range(8)]


def test_agents_suggest_and_record_calls_over_mcp(served: Served) -> None:
    """The MCP tools at /mcp, called with the SDK's own client over Streamable HTTP: the server names its version,
    the same predictions as /predict, a recorded call labelled as /feedback labels it, and refusals in the routes'
    words. Events may be objects with their response and the spec inline, as /predict takes them, and each call
    comes whole: its body filled from the response, with where each value came from."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    spec_id = served.post("/specs", {"spec": BILLING}).json()["spec_id"]

    async def session_calls(headers: dict[str, str]) -> tuple[list[str], Any, Any, Any, Any]:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(served.base + "/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            started = await session.initialize()
            assert (started.server_info.name, started.server_info.version) == ("OpenSesame", VERSION)
            tools = [tool.name for tool in (await session.list_tools()).tools]
            suggested = await session.call_tool("suggest_next_calls", {
                "user_id": "agent", "spec_id": spec_id, "events": ["GET /v1/invoices/in_42"], "prompt": "pay it",
                "k": 3})
            recorded = None
            if not suggested.is_error:
                recorded = await session.call_tool("record_call", {
                    "prediction_id": suggested.structured_content["prediction_id"],
                    "called": "POST /v1/invoices/in_42/pay"})
            # Without user_id: the session is the caller's (its key's name, else its address).
            unknown = await session.call_tool("suggest_next_calls", {"spec_id": "0" * 64, "events": []})
            whole = await session.call_tool("suggest_next_calls", {
                "spec": REQUESTS, "prompt": "create an invoice for this customer", "k": 50,
                "events": [{"endpoint": "GET /v1/customers/cus_9", "response": {"id": "cus_9", "email": "b@x.com"}}]})
            return tools, suggested, recorded, unknown, whole

    tools, suggested, recorded, unknown, whole = asyncio.run(session_calls({}))
    assert {"suggest_next_calls", "record_call"} <= set(tools)
    assert not suggested.is_error, suggested
    top = suggested.structured_content["predictions"][0]
    assert (top["endpoint"], top["path"]) == ("POST /invoices/{invoice}/pay", "/v1/invoices/in_42/pay")
    assert suggested.structured_content["model_version"] in {v.label for v in served.versions}
    assert not recorded.is_error and recorded.structured_content["rank"] == 1, recorded
    assert recorded.structured_content["outcome"] == "called"
    assert unknown.is_error and "404 SpecNotFoundError: unknown spec_id" in unknown.content[0].text, unknown
    assert not whole.is_error, whole
    invoice = next(p for p in whole.structured_content["predictions"] if p["endpoint"] == "POST /invoices")
    assert (invoice["body"], invoice["filled_from"], invoice["missing"]) == ({"customer": "cus_9"},
                                                                             {"customer": "history"}, [])

    _, refused, _, _, _ = asyncio.run(session_calls({"X-API-Key": "os_nobody"}))
    assert refused.is_error and "401 UnauthorizedError: unknown API key" in refused.content[0].text, refused


def test_the_console_page_predicts_and_records_calls_in_a_real_browser(served: Served, tmp_path: Path) -> None:
    """/console in headless Chromium (Debian's chromium and chromium-driver): register a spec by pasting it, add a
    call with its response, ask, accept a suggestion with its number key (its path filled from the response): it
    is recorded as feedback, joins the history, and the next prediction follows from it. At a phone's width the
    page is one column no wider than the window."""
    driver_path, browser = shutil.which("chromedriver"), shutil.which("chromium")
    if not (driver_path and browser):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make install adds them as root)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    wait = WebDriverWait(driver, 30)

    def status() -> str:
        return driver.find_element(By.ID, "status").text

    def suggestions() -> list[tuple[str, str]]:
        return [(li.get_attribute("data-endpoint"), li.get_attribute("data-call"))
                for li in driver.find_elements(By.CSS_SELECTOR, "#predictions li")]

    try:
        driver.get(served.base + "/console")
        paste = driver.find_element(By.ID, "spec-text")
        driver.execute_script("arguments[0].value = arguments[1]", paste, BILLING)  # a paste, not keystrokes
        driver.find_element(By.ID, "spec-register").click()
        wait.until(lambda _: status().startswith("registered"))
        # A created invoice: its id is only in the response, pasted beside the call.
        driver.find_element(By.ID, "call-response").send_keys('{"id": "in_7", "object": "invoice"}')
        driver.find_element(By.ID, "call-input").send_keys("POST /v1/invoices", Keys.ENTER)
        prompt = driver.find_element(By.ID, "prompt")
        prompt.send_keys("pay it", Keys.CONTROL, Keys.ENTER)
        wait.until(lambda _: suggestions())
        first = suggestions()
        endpoints = [endpoint for endpoint, _ in first]
        assert "POST /invoices/{invoice}/pay" in endpoints, first
        number = endpoints.index("POST /invoices/{invoice}/pay") + 1
        assert first[number - 1][1] == "POST /v1/invoices/in_7/pay", first
        # Each suggestion shows the query and body values the answer filled and an input for each field missing.
        shown = driver.execute_script(
            "return state.prediction.predictions.map((p, i) => {"
            " const li = document.querySelectorAll('#predictions li')[i];"
            " return [Object.keys(p.query).length + Object.keys(p.body).length, li.querySelectorAll('.filled code').length,"
            " p.missing.length, li.querySelectorAll('.missing input').length]; })")
        assert all(values == codes and missing == inputs for values, codes, missing, inputs in shown), shown
        driver.find_element(By.TAG_NAME, "h1").click()  # focus leaves the inputs: number keys choose
        driver.switch_to.active_element.send_keys(str(number))
        wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#history li")) == 2)
        wait.until(lambda _: suggestions() and suggestions() != first)
        history = [li.text.removesuffix("×").strip() for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]
        assert history == ["POST /v1/invoices (with its response)", "POST /v1/invoices/in_7/pay"], history
        driver.save_screenshot(str(tmp_path / "console.png"))
        # A phone's width: one column, nothing wider than the window.
        driver.set_window_size(420, 900)
        wait.until(lambda _: driver.execute_script("return window.innerWidth") <= 420)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        lefts = {round(s.rect["x"]) for s in driver.find_elements(By.TAG_NAME, "section")}
        driver.save_screenshot(str(tmp_path / "console-420.png"))
        assert overflow <= 0 and len(lefts) == 1, (overflow, lefts)
    finally:
        driver.quit()
    def recorded() -> bool:
        f = read_labels(str(served.labels))
        chosen = f[f.user_id.str.startswith("console-") & (f.source == "explicit") & (f["rank"] == number)]
        return bool((chosen.endpoint == "POST /invoices/{invoice}/pay").any())

    poll(recorded, timeout_s=30)
