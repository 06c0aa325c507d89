"""The page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): it loads, shows the apps, restarts one, follows its log, follows a crash, asks before
"all" actions, shows names as text, and says when the daemon is gone."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import wait_for
from web_helpers import needs_web, start_web

CHROMIUM = os.environ.get("PYVM2_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PYVM2_CHROMEDRIVER", "/usr/bin/chromedriver")

try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    needs_web,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed: pip install -e '.[test]'"),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason=f"no {CHROMIUM} or {CHROMEDRIVER}: apt-get install chromium chromium-driver"),
]

HTML_NAME = "<img src=x onerror=alert(1)>&amp;"

#: Reads the process table as the page shows it: {name: {column: text}}.
READ_TABLE = """
const heads = Array.from(document.querySelectorAll('#apps thead th')).map(th => th.textContent);
const out = {};
for (const tr of document.querySelectorAll('#apps tbody tr')) {
  const cells = Array.from(tr.children).map(td => td.textContent);
  const row = {};
  heads.forEach((h, i) => { row[h] = cells[i]; });
  row.statusClass = tr.children[7].className;
  out[cells[1]] = row;
}
return out;
"""


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pyvm2-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(driver, probe: Callable[[], Any], check: Callable[[Any], bool] = bool,
          what: str = "the page", timeout: float = 20) -> Any:
    return wait_for(probe, check, timeout=timeout, what=what, interval=0.1)


def table(driver) -> dict[str, dict[str, str]]:
    return driver.execute_script(READ_TABLE)


def click(driver, selector: str, timeout: float = 20) -> None:
    """Click the element now matching `selector` (rows are updated in place, but retry anyway)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        try:
            element = driver.find_element(By.CSS_SELECTOR, selector)
            if not element.is_enabled():
                return False  # an action on this row is still in flight
            element.click()
            return True
        except WebDriverException:
            return False

    wait_for(attempt, timeout=timeout, what=f"{selector} to be clickable", interval=0.1)


def open_page(driver, pv, *apps: dict) -> Any:
    if apps:
        pv.ok("start", str(pv.write_eco(list(apps))))
    web = start_web(pv)
    driver.delete_all_cookies()
    driver.get(web.url)
    assert driver.current_url == f"http://localhost:{web.port}/", driver.current_url
    until(driver, lambda: driver.execute_script("return document.getElementById('conn').textContent"),
          lambda t: t == "live", what="the page to be live")
    return web


def row_selector(pm_id: int, action: str) -> str:
    return f'#apps tbody tr[data-id="{pm_id}"] button[data-action="{action}"]'


def test_page_loads_shows_the_apps_and_a_restart_button_restarts(driver, pv):
    web = open_page(driver, pv, pv.app("tick", "ticker.py"))
    rows = until(driver, lambda: table(driver), lambda t: "tick" in t and "pyvm2-web" in t,
                 what="both apps in the table")
    tick = rows["tick"]
    assert tick["status"] == "online" and "status-online" in tick["statusClass"]
    assert tick["↺"] == "0" and tick["mode"] == "fork" and tick["mem"].endswith("b")
    assert driver.title == "pyvm2"
    pm_id = web.app("tick")["pm_id"]
    click(driver, row_selector(pm_id, "restart"))
    until(driver, lambda: table(driver)["tick"]["↺"], lambda r: r == "1", what="↺ to show 1")
    assert web.app("tick")["pm2_env"]["restart_time"] == 1
    assert table(driver)["tick"]["status"] == "online"
    click(driver, row_selector(pm_id, "stop"))
    until(driver, lambda: table(driver)["tick"]["status"], lambda s: s == "stopped",
          what="tick stopped")
    assert "status-stopped" in table(driver)["tick"]["statusClass"]
    assert pv.status("tick") == ["stopped"]
    logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


def test_the_log_pane_follows_an_app(driver, pv):
    web = open_page(driver, pv, pv.app("tick", "ticker.py", env={"TICK_S": "0.2"}))
    pm_id = web.app("tick")["pm_id"]
    click(driver, f'#apps tbody tr[data-id="{pm_id}"] td.name')
    until(driver, lambda: driver.execute_script(
        "return document.getElementById('detail-title').textContent"),
        lambda t: t == f"tick (id {pm_id})", what="the detail pane")
    read = ("return Array.from(document.querySelectorAll('#log .line')).map("
            "l => [l.dataset.stream, l.textContent])")
    lines = until(driver, lambda: driver.execute_script(read),
                  lambda ls: any(s == "out" for s, _ in ls) and any(s == "err" for s, _ in ls),
                  what="stdout and stderr lines in the pane")
    assert all(t.startswith("tick ") for s, t in lines if s == "out")
    assert all(t.startswith("tock ") for s, t in lines if s == "err")
    last = max(int(t.split()[1]) for s, t in lines if s == "out")
    until(driver, lambda: driver.execute_script(read),
          lambda ls: max(int(t.split()[1]) for s, t in ls if s == "out") >= last + 5,
          what="newer lines to arrive")
    # the charts have data, and stderr can be hidden
    until(driver, lambda: driver.execute_script(
        "return document.getElementById('mem-now').textContent"), lambda t: "mb" in t,
        what="the memory chart's current value")
    click(driver, "#show-err")
    hidden = driver.execute_script(
        "const l = document.querySelector('#log .line.err'); return getComputedStyle(l).display")
    assert hidden == "none"


def test_the_page_follows_a_crash(driver, pv):
    web = open_page(driver, pv, pv.app("tick", "ticker.py"))
    tick = web.app("tick")
    click(driver, f'#apps tbody tr[data-id="{tick["pm_id"]}"] td.name')
    until(driver, lambda: table(driver).get("tick"), what="tick in the table")
    os.kill(tick["pid"], signal.SIGKILL)
    until(driver, lambda: table(driver)["tick"]["↺"], lambda r: r == "1", what="↺ 1 after the crash")
    reasons = until(driver, lambda: driver.execute_script(
        "return document.getElementById('reasons').textContent"), lambda t: "killed by SIGKILL" in t,
        what="the restart reason")
    assert "↺1" in reasons
    info = driver.execute_script("return document.getElementById('detail-info').textContent")
    assert "killed by SIGKILL" in info
    # an app that keeps crashing ends errored, in red
    r = pv.run("start", str(pv.write_eco([pv.app("crashy", "exit_now.py", max_restarts=1,
                                                 min_uptime=5000, restart_delay=100)], name="c.json")),
               "--wait")
    assert r.code == 1 and "errored" in r.err, str(r)  # start --wait says so, and so does the page
    row = until(driver, lambda: table(driver).get("crashy"),
                lambda r: bool(r) and r["status"] == "errored", what="crashy errored")
    assert "status-errored" in row["statusClass"]


def test_all_actions_ask_first_and_spare_the_web_server(driver, pv):
    web = open_page(driver, pv, pv.app("tick", "ticker.py"), pv.app("tock", "ticker.py"))
    until(driver, lambda: table(driver), lambda t: {"tick", "tock"} <= set(t), what="the apps")
    dialog_open = "return document.getElementById('confirm').open"
    click(driver, 'button[data-all="stop"]')
    until(driver, lambda: driver.execute_script(dialog_open), what="the confirmation")
    text = driver.execute_script("return document.getElementById('confirm-text').textContent")
    assert "Stop all 2 app(s)" in text, text
    click(driver, "#confirm-no")
    until(driver, lambda: not driver.execute_script(dialog_open), what="the dialog to close")
    time.sleep(0.5)  # a cancelled action must not happen a moment later either
    assert pv.status("tick") == ["online"] and pv.status("tock") == ["online"]
    click(driver, 'button[data-all="stop"]')
    until(driver, lambda: driver.execute_script(dialog_open), what="the confirmation")
    click(driver, "#confirm-yes")
    until(driver, lambda: table(driver),
          lambda t: t["tick"]["status"] == "stopped" and t["tock"]["status"] == "stopped",
          what="both stopped")
    assert table(driver)["pyvm2-web"]["status"] == "online"
    assert web.app("pyvm2-web")["pm2_env"]["status"] == "online"


def test_names_are_text_and_the_daemon_going_away_is_shown(driver, pv):
    web = open_page(driver, pv, pv.app(HTML_NAME, "ticker.py"))
    until(driver, lambda: table(driver), lambda t: HTML_NAME in t, what="the HTML name as text")
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0
    pm_id = next(a["pm_id"] for a in web.apps() if a["name"] == HTML_NAME)
    click(driver, f'#apps tbody tr[data-id="{pm_id}"] td.name')
    until(driver, lambda: driver.execute_script(
        "return document.getElementById('detail-title').textContent"),
        lambda t: t.startswith(HTML_NAME), what="the name in the detail pane")
    banner = "return document.getElementById('banner-daemon').hidden"
    assert driver.execute_script(banner) is True
    os.kill(pv.daemon_pid(), signal.SIGKILL)
    until(driver, lambda: driver.execute_script(banner), lambda h: h is False,
          what="the daemon-down banner")
    pv.ok("ping")
    until(driver, lambda: driver.execute_script(banner), lambda h: h is True,
          what="the banner to go when the daemon is back")
    until(driver, lambda: table(driver), lambda t: HTML_NAME in t and "pyvm2-web" in t,
          what="the table after the daemon came back")
