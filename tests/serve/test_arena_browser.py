"""The arena in a real browser (headless Debian chromium): a person clicks a Connect Four move
and sees the agent answer, with its search drawn on the board."""

from __future__ import annotations

from bellman.serve import make_state


def test_click_a_connect_four_move_and_see_the_agent_answer(
    live_server, browser, artifacts, connect4_run
):
    url = live_server(make_state([connect4_run]))
    browser.goto(url + "/arena")
    browser.wait_for_selector("#status:has-text('Your move.')")
    browser.click("rect.column[data-action='3']")
    browser.wait_for_selector("#status:has-text('The agent played')")
    moves = browser.text_content("#moves").split()
    assert len(moves) == 2 and moves[0] == "4"  # the column clicked, then the agent's
    svg = "#board-svg"
    assert browser.locator(f"{svg} circle[fill='#e33']").count() == 1  # the person's disc
    assert browser.locator(f"{svg} circle[fill='#f5d300']").count() == 1  # the agent's
    shares = [float(browser.locator("rect.heat").nth(i).get_attribute("data-share"))
              for i in range(7)]  # fmt: skip
    assert abs(sum(shares) - 1) < 1e-6  # the heat map: each column's share of the visits
    assert shares[int(moves[1]) - 1] == max(shares)  # the most visited column was played
    assert browser.text_content("#pv").split()[0] == moves[1]
    assert browser.locator("#search-table tr").count() >= 2
    browser.screenshot(path=str(artifacts / "arena-connect4.png"))
    browser.select_option("#heat", "q")  # the values Q(s, a): green for the agent, red against
    played = browser.locator(f"rect.heat[data-action='{int(moves[1]) - 1}']")
    row = browser.locator("#search-table tr", has=browser.locator(f"td:text-is('{moves[1]}')"))
    q = float(row.locator("td").nth(2).text_content())
    assert played.get_attribute("fill") == ("#1a9850" if q >= 0 else "#d73027")

    # the agent moves first when the person plays second
    browser.select_option("#side", "1")
    browser.wait_for_selector("#status:has-text('The agent played')")
    assert len(browser.text_content("#moves").split()) == 1
