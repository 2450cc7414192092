"""The web console in a real browser: Debian's headless Chromium driven by Playwright. Signs in,
opens a service and runs its "try it" form, uploads a file to a session and downloads it,
watches a batch finish, sees a compute node's pool get busy while requests run, and loads the
Swagger UI with its assets. Screenshots of the main pages go to $O16N_SCREENSHOTS (a fresh
temporary directory when unset); their paths are printed."""
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

from conftest import ADMIN_PASSWORD

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Tests wait on what the page shows, never on a fixed sleep; this bounds every such wait.
WAIT_MS = 60_000

# A 32x32 red square as PNG, written by the service without any imaging library.
PNG_SERVICE = r"""
import struct, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body) & 0xffffffff)
rows = b''.join(b'\x00' + bytes([200, 30, 30] * 32) for _ in range(32))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 32, 32, 8, 2, 0, 0, 0)) \
    + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
open('plot.png', 'wb').write(png)
total = x + 1
print('plotted', total)
"""


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (scripts/test.sh installs Debian's chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots():
    directory = os.environ.get("O16N_SCREENSHOTS") or tempfile.mkdtemp(prefix="o16n-console-")
    os.makedirs(directory, exist_ok=True)
    return directory


def shoot(page, screenshots, name):
    path = os.path.join(screenshots, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


def signed_in_page(chromium, server, user="admin", password=ADMIN_PASSWORD):
    """A browser page signed in through the console's own form."""
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + "/console/")
    assert "/console/login" in page.url
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/console/services")
    return page


def api(server, method, path, **kwargs):
    response = requests.request(method, server.url + path,
                                headers={"Authorization": "Bearer " + server.token()}, **kwargs)
    assert response.status_code < 300, response.text
    return response


def test_sign_in_open_a_service_and_try_it(chromium, server, screenshots):
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    onnx_model = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    api(server, "POST", "/realtime-services/iris/v1", files={"model": ("iris.onnx", onnx_model.SerializeToString())},
        data={"description": "iris species from four measurements"})
    api(server, "POST", "/services/plotter/v1", json={
        "runtimeType": "Python", "code": PNG_SERVICE,
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "total", "type": "numeric"}],
        "outputFileNames": ["plot.png"]})

    page = signed_in_page(chromium, server)
    assert page.get_by_role("link", name="iris").is_visible()
    page.get_by_label("Search by name").fill("plot")
    page.get_by_role("link", name="plotter").wait_for()
    page.get_by_role("link", name="iris").wait_for(state="detached")
    shoot(page, screenshots, "services")

    page.get_by_role("link", name="plotter").click()
    page.get_by_label("x (numeric)").fill("41")
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator("#result").get_by_text("Succeeded.").wait_for()
    result = page.locator("#result").inner_text()
    assert "42" in result and "plotted 42" in result, result
    image = page.locator("#result img")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 32
    shoot(page, screenshots, "service-try-it")

    page.goto(server.url + "/console/services/iris/v1")
    page.get_by_label("inputData").fill('{"x0": [5.1], "x1": [3.5], "x2": [1.4], "x3": [0.2]}')
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator("#result").get_by_text("Succeeded.").wait_for()
    assert "label" in page.locator("#result").inner_text()
    page.context.close()


def test_upload_a_file_to_a_session_and_download_it(chromium, server, screenshots, tmp_path):
    page = signed_in_page(chromium, server)
    page.get_by_role("link", name="Sessions").click()
    page.get_by_label("Name (optional)").fill("browser")
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_url("**/console/sessions/*")
    upload = tmp_path / "measurements.csv"
    upload.write_text("a,b\n1,2\n")
    page.get_by_label("Upload a file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_role("link", name="measurements.csv").wait_for()
    page.get_by_label("Code").fill("import pandas\nprint(pandas.read_csv('measurements.csv').sum().sum())")
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator("#ran-output").get_by_text("3").wait_for()
    shoot(page, screenshots, "session")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="measurements.csv").click()
    downloaded = tmp_path / "downloaded.csv"
    download_info.value.save_as(str(downloaded))
    assert downloaded.read_text() == "a,b\n1,2\n"
    page.context.close()


def test_watch_a_batch_finish(chromium, server, screenshots):
    api(server, "POST", "/services/slow/v1", json={
        "runtimeType": "Python", "code": "import time\ntime.sleep(0.3)\ny = x * 2",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]})
    started = api(server, "POST", "/api/slow/v1/batch?parallelCount=1", json=[{"x": i} for i in range(8)])
    batch = started.json()["batchExecutionId"]

    page = signed_in_page(chromium, server)
    page.get_by_role("link", name="Batches").click()
    page.get_by_role("link", name=batch).click()
    # The page refreshes itself while the batch runs: no reload here.
    page.locator("#batch-state").get_by_text("Complete").wait_for()
    assert "8 of 8 records done" in page.locator("#progress").inner_text()
    assert page.locator("#progress tbody tr").count() == 8
    shoot(page, screenshots, "batch")
    page.context.close()


def test_a_compute_nodes_pool_gets_busy_while_requests_run(chromium, server, screenshots):
    api(server, "POST", "/services/nap/v1", json={
        "runtimeType": "Python", "code": "import time\ntime.sleep(4)\ny = 1",
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]})
    page = signed_in_page(chromium, server)
    page.get_by_role("link", name="Cluster").click()
    python = page.locator("tr.pool", has_text="Python · shared")
    python.wait_for()
    assert python.locator("td.busy").inner_text() == "0"

    token = server.token()
    answers = []
    def consume():
        answers.append(requests.post(server.url + "/api/nap/v1", json={},
                                     headers={"Authorization": "Bearer " + token}).status_code)
    requests_running = [threading.Thread(target=consume) for _ in range(2)]
    for thread in requests_running:
        thread.start()
    # The page refreshes every two seconds by itself.
    page.wait_for_function(
        """() => [...document.querySelectorAll('tr.pool')]
             .some(row => row.innerText.includes('Python · shared')
                  && Number(row.querySelector('td.busy').innerText) > 0)""", polling=250)
    shoot(page, screenshots, "cluster-busy")
    for thread in requests_running:
        thread.join()
    assert answers == [200, 200], answers
    page.context.close()


def test_the_swagger_ui_loads_its_assets_and_lists_the_api(chromium, server, screenshots):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    failed = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto(server.url + "/swagger-ui/")
    page.locator(".opblock-summary-path", has_text="/login").first.wait_for()
    assert page.locator(".opblock").count() > 20
    assert not failed, failed
    shoot(page, screenshots, "swagger-ui")
    context.close()


def test_a_phone_sized_console_keeps_its_navigation(chromium, server, screenshots):
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + "/console/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/services")
    for name in ("Services", "Sessions", "Snapshots", "Batches", "Cluster"):
        assert page.get_by_role("link", name=name, exact=True).is_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone: {width}px"
    shoot(page, screenshots, "phone-services")
    context.close()
