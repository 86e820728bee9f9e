"""End to end in a real browser: JupyterLab runs notebook 07, headless Chromium clicks the explorer.

Needs Debian's ``chromium`` at /usr/bin/chromium (``apt-get install chromium``); Playwright drives it,
no browser download. Writes a screenshot to ``artifacts/explorer.png``.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = "07_explore.ipynb"
K = 8
#: What the notebook indexes in this test (its parameters cell reads CBIR_NB_<NAME>).
NOTEBOOK_ENV = {"CBIR_NB_CATALOGUE": "sample", "CBIR_NB_N_IMAGES": "120", "CBIR_NB_K": str(K),
                "CBIR_NB_BACKBONES": "resnet50", "CBIR_NB_WEIGHTS": "random"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: JupyterLab user settings: no news prompt, every cell kept in the DOM (no windowing).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) "
                              "to run the explorer in a real browser"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, isolated_cache):
    """JupyterLab on a free localhost port with its own token, serving a temporary copy of notebooks/."""
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for name, values in LAB_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **NOTEBOOK_ENV, "CBIR_TUTORIAL_CACHE": str(isolated_cache), "MPLBACKEND": "Agg",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
    log = home / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--IdentityProvider.token={token}",
               "--ServerApp.ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={notebooks}", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=notebooks, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", process, log)
        yield {"url": f"{base}/lab/tree/{NOTEBOOK}?token={token}", "log": log}
    finally:
        process.terminate()  # the server shuts its kernels down
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything of its session left behind (a kernel)
        except ProcessLookupError:
            pass


def result_ids(page) -> list[str]:
    return page.locator(".cbir-grid .cbir-result").evaluate_all("items => items.map(item => item.dataset.id)")


def wait_for_new_grid(page, old: list[str], timeout_ms: int) -> list[str]:
    """Wait until the grid shows K results that differ from ``old``; return their ids."""
    page.wait_for_function(
        """([k, old]) => {
            const ids = [...document.querySelectorAll('.cbir-grid .cbir-result')].map(item => item.dataset.id);
            return ids.length === k && ids.join() !== old;
        }""", arg=[K, ",".join(old)], timeout=timeout_ms)
    return result_ids(page)


def run_all_cells(page) -> None:
    """Menu Run → Run All Cells, once the kernel is idle; fails unless the first cell starts running."""
    from playwright.sync_api import expect

    expect(page.get_by_text(re.compile(r"\| Idle$")).first).to_be_visible(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    started = page.locator(".jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    expect(started.first).to_be_visible(timeout=60_000)


def test_the_explorer_runs_in_jupyterlab_and_answers_clicks(lab):
    from playwright.sync_api import expect, sync_playwright

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(lab["url"])
            expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible(timeout=90_000)

            run_all_cells(page)

            grid = page.locator(".cbir-grid .cbir-result")
            expect(grid).to_have_count(K, timeout=300_000)  # kernel start, TensorFlow, features of 120 photos
            query = page.locator(".cbir-query")
            expect(query).to_contain_text(f"P@{K} = ")
            expect(query).to_contain_text("catalogue row 0")
            first = result_ids(page)

            page.get_by_role("button", name="random").click()
            second = wait_for_new_grid(page, first, 60_000)
            expect(query).not_to_contain_text("catalogue row 0")

            backbone = page.locator(".widget-dropdown").filter(
                has=page.get_by_text("backbone", exact=True)).locator("select")  # the one labelled "backbone"
            backbone.select_option(label="ResNet50, RANDOM weights (untrained)")
            wait_for_new_grid(page, second, 300_000)  # builds the random ResNet50's features first
            status = page.locator(".cbir-status")
            expect(status).to_contain_text(f"ResNet50, RANDOM weights (untrained): top {K} of")
            expect(status).to_contain_text("features computed in")
            expect(query).to_contain_text("ResNet50, RANDOM weights")

            explorer = page.locator(".jp-OutputArea-output", has=page.locator(".cbir-grid"))
            explorer.scroll_into_view_if_needed()
            explorer.screenshot(path=str(artifacts / "explorer.png"))
        except Exception:
            page.screenshot(path=str(artifacts / "explorer-failure.png"))
            print(f"JupyterLab log (end):\n{lab['log'].read_text()[-4000:]}")
            raise
        finally:
            browser.close()
    assert (artifacts / "explorer.png").stat().st_size > 10_000
