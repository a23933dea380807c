"""A real browser: JupyterLab on localhost, Debian's Chromium driven by Playwright, runs 00_quickstart (in
QUICK mode), moves the alpha slider and waits for the live preview to change without pressing any button, then
presses Render and finds the run folder it names. Bounded in time; the server it starts is stopped. Skipped when
Chromium or Playwright is missing."""

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

from .conftest import ROOT

RENDERED = re.compile(r"rendered to (\S+)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter(tmp_path):
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work)  # the server may autosave: never the repo's copy
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell: JupyterLab 4 virtualises cells scrolled out of view, which hides their outputs
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "NST_QUICK": "1",
        "NST_RESULTS_DIR": str(tmp_path / "results"),  # the panel's run folders land here, not in the repository
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
    }
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-2000:])
                time.sleep(0.5)
        yield url, token, tmp_path / "results"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_quickstart_panel_in_a_real_browser(jupyter):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    url, token, results = jupyter
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/lab/tree/00_quickstart.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            page.wait_for_timeout(2_000)  # a kernel-selection dialog, if any, shows up around now
            for _attempt in range(4):  # a Run All sent while the kernel is still connecting can be dropped
                kernel_dialog = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
                if kernel_dialog.count() and kernel_dialog.first.is_visible():  # a fresh server may ask
                    kernel_dialog.first.click()
                    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_text("Run All Cells", exact=True).click()
                try:
                    page.wait_for_selector(".jp-InputPrompt:has-text('[1]')", timeout=30_000)
                    break
                except sync_api.TimeoutError:
                    continue
            # the last code cell runs the panel once and saves its figure
            page.wait_for_selector(
                ".jp-OutputArea-output:has-text('quick_figures/00_quickstart/panel_run.png')", timeout=300_000
            )
            preview = page.locator("img.widget-image").first
            page.wait_for_function("() => { const i = document.querySelector('img.widget-image'); return i && i.src; }")
            message = page.locator(".widget-html", has_text="rendered to").first
            first_run = Path(RENDERED.search(message.inner_text()).group(1))  # the render the notebook ran
            before = preview.get_attribute("src")
            readout = page.locator(".widget-slider", has=page.locator("label", has_text="α content"))
            value_before = readout.locator(".widget-readout").inner_text()
            handle = readout.locator(".noUi-handle").first
            handle.focus()
            for _ in range(10):  # ten steps of 0.1 decade: alpha from 1 to 0.1
                handle.press("ArrowLeft")
            assert readout.locator(".widget-readout").inner_text() != value_before
            # no button pressed: releasing the slider starts the live preview, which repaints the image
            page.wait_for_function(
                "(before) => { const i = document.querySelector('img.widget-image'); return i && i.src !== before; }",
                arg=before,
                timeout=180_000,
            )
            page.wait_for_selector(".widget-label:has-text('preview ')", timeout=60_000)
            page.locator("button.widget-button", has_text="Render").first.click()
            page.wait_for_function(
                "(first) => [...document.querySelectorAll('.widget-html')].some("
                "  e => e.innerText.includes('rendered to') && !e.innerText.includes(first))",
                arg=str(first_run),
                timeout=180_000,
            )
            run_dir = Path(RENDERED.search(message.inner_text()).group(1))
            assert run_dir != first_run and run_dir.parent == results, (run_dir, results)
            record = json.loads((run_dir / "config.json").read_text())
            assert record["status"] == "completed" and (run_dir / "output.png").is_file()
            assert record["config"]["content_weight"] == pytest.approx(0.1, rel=0.01)  # the slider's value
        finally:
            (ROOT / "results").mkdir(exist_ok=True)  # a screenshot in any case: on failure it shows why
            page.screenshot(path=str(ROOT / "results" / "browser_00_quickstart.png"), full_page=True)
            browser.close()
