"""The run browser and the watch page in a real browser (headless Debian chromium): open a run
and see its curve (Plotly's SVG), compare two runs, watch a CartPole agent play."""

from __future__ import annotations

from bellman.serve import make_state


def test_open_a_run_and_see_its_curve(live_server, browser, artifacts, cartpole_run, connect4_run):
    url = live_server(make_state([cartpole_run, connect4_run]))
    browser.goto(url + "/runs")
    browser.click("a:text('dqn-cartpole')")
    browser.wait_for_selector(".plot[data-metric='episode_return_mean'] svg.main-svg")
    curve = browser.locator(".plot[data-metric='episode_return_mean'] .scatterlayer .trace")
    assert curve.count() == 1
    assert browser.locator(".plot").count() == 2  # the return and DQN's TD loss
    assert 'algo = "dqn"' in browser.text_content("#config")
    browser.screenshot(path=str(artifacts / "runs-one.png"), full_page=True)

    browser.goto(url + "/runs")
    browser.check("input[value='dqn-cartpole']")
    browser.check("input[value='alphazero-connect4']")
    browser.click("button:text('Compare')")
    browser.wait_for_selector(".plot[data-metric='episode_return_mean'] svg.main-svg")
    traces = browser.locator(".plot[data-metric='episode_return_mean'] .scatterlayer .trace")
    assert traces.count() == 2  # both runs on one plot
    assert browser.locator(".plot[data-metric='episode_return_mean'] .legend .traces").count() == 2


def test_watch_an_agent_play_cartpole(live_server, browser, artifacts, cartpole_run):
    url = live_server(make_state([cartpole_run]))
    browser.goto(url + "/watch")
    browser.click("a:text('dqn-cartpole')")
    browser.fill("#episodes", "1")
    browser.fill("#fps", "60")
    browser.click("#play")
    browser.wait_for_selector("#watch-status:has-text('Finished.')")
    assert browser.get_attribute("#frame", "src").startswith("data:image/jpeg;base64,")
    width = browser.evaluate("document.getElementById('frame').naturalWidth")
    assert width == 600  # CartPole's rendered frame
    rows = browser.locator("#episodes-table tr")
    assert rows.count() == 2 and rows.nth(1).locator("td").first.text_content() == "1"
    browser.screenshot(path=str(artifacts / "watch-cartpole.png"))
