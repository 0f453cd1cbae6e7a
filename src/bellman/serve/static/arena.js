// The arena page: draw the board in SVG, send the game's move list to the server, draw the
// agent's answer and its search (heat map of visit shares, principal variation, top moves).
// The server checks every move; this page only draws what it answers.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const agents = JSON.parse(document.getElementById("arena-agents").textContent);
  const $ = (id) => document.getElementById(id);
  let agent = agents[0];
  let game = null;      // the server's last description of the position
  let search = null;    // the agent's last search
  let busy = false;

  for (const a of agents) {
    const option = document.createElement("option");
    option.value = a.name;
    option.textContent = `${a.name} (${a.game}, ${a.algo})`;
    $("agent").appendChild(option);
  }

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function human() { return Number($("side").value); }

  async function send(moves) {
    busy = true;
    $("status").textContent = "The agent is thinking...";
    const body = { moves: moves, simulations: Number($("simulations").value) };
    try {
      const response = await fetch(`/api/arena/${encodeURIComponent(agent.name)}/move`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) {
        $("status").textContent = `Refused: ${answer.error}`;
        $("status").className = "status error";
        return;
      }
      $("status").className = "status";
      game = answer.after;
      if (answer.search) search = { ...answer.search, move: answer.move, text: answer.move_text };
      draw();
    } catch (error) {
      $("status").textContent = `The server did not answer: ${error}`;
    } finally {
      busy = false;
    }
  }

  function newGame() {
    agent = agents.find((a) => a.name === $("agent").value) || agents[0];
    search = null;
    $("pass").hidden = agent.kind !== "points";
    if (!$("simulations").value || newGame.agentName !== agent.name) {
      $("simulations").value = agent.simulations;
    }
    newGame.agentName = agent.name;
    if (human() === 0) { // the human moves first: the empty board, no search yet
      game = { moves: [], moves_text: [], board: null, to_play: 0, over: false };
      draw();
    } else {
      game = null;
      send([]); // the agent moves first on the empty board
    }
  }

  function play(action) {
    if (busy || !game || game.over) return;
    if (game.to_play !== human()) return;
    send([...game.moves, action]);
  }

  function shape() {
    return { tictactoe: [3, 3], connect4: [6, 7], go9: [9, 9], go13: [13, 13],
      go19: [19, 19] }[agent.game];
  }

  function draw() {
    const [rows, cols] = shape();
    const kind = agent.kind;
    const cell = kind === "points" ? Math.min(44, Math.floor(440 / cols)) : (kind === "cells" ? 90 : 60);
    const top = kind === "columns" ? 34 : 0;
    const width = cols * cell, height = rows * cell + top;
    const board = $("board");
    board.innerHTML = "";
    const svg = el("svg", { width: width, height: height, viewBox: `0 0 ${width} ${height}`,
      id: "board-svg" }, board);
    const cells = game && game.board ? game.board
      : Array.from({ length: rows }, () => Array(cols).fill(0));
    const total = search ? search.visits.reduce((a, b) => a + b, 0) : 0;
    const share = (a) => (search && total > 0 ? search.visits[a] / total : 0);
    const most = search ? Math.max(...search.visits) : 0;
    // the heat map: visits (orange, darkest the most visited) or, for visited moves, the value
    // Q(s, a) for the agent (green above 0, red below, darker further from 0)
    const byValue = $("heat").value === "q";
    const heat = (a) => {
      if (!search || search.visits[a] === 0) return 0;
      return byValue ? 0.1 + 0.8 * Math.abs(search.q[a]) : 0.1 + 0.8 * search.visits[a] / most;
    };
    const hue = (a) => (!byValue ? "#ff7a00" : search.q[a] >= 0 ? "#1a9850" : "#d73027");
    const tip = (a) => (search
      ? `N=${search.visits[a]}  Q=${search.q[a].toFixed(3)}  prior=${search.priors[a].toFixed(3)}`
      : "");

    if (kind === "columns") {
      el("rect", { x: 0, y: top, width: width, height: rows * cell, fill: "#2b5fad", rx: 8 }, svg);
      for (let c = 0; c < cols; c++) {
        const bar = el("rect", { x: c * cell + 4, y: 2, width: cell - 8, height: top - 6,
          fill: search ? hue(c) : "none", "fill-opacity": heat(c), stroke: "#ccc",
          class: "heat",
          "data-action": c, "data-share": share(c) }, svg);
        el("title", {}, bar).textContent = tip(c);
        if (search && search.visits[c] > 0) {
          const label = el("text", { x: c * cell + cell / 2, y: top - 12, "text-anchor": "middle",
            "font-size": 12 }, svg);
          label.textContent = search.visits[c];
        }
        const landed = cells.findIndex((row) => row[c] !== 0); // the top disc of the column
        for (let r = 0; r < rows; r++) {
          const v = cells[r][c];
          const last = search && search.move === c && r === landed;
          el("circle", { cx: c * cell + cell / 2, cy: top + r * cell + cell / 2, r: cell * 0.4,
            fill: v === 1 ? "#e33" : v === 2 ? "#f5d300" : "#f6f7f9",
            stroke: last ? "#0a7" : "none", "stroke-width": 4 }, svg);
        }
        const hit = el("rect", { x: c * cell, y: 0, width: cell, height: height, fill: "transparent",
          class: "column", "data-action": c, cursor: "pointer" }, svg);
        hit.addEventListener("click", () => play(c));
      }
    } else {
      if (kind === "points") {
        el("rect", { x: 0, y: 0, width: width, height: height, fill: "#dcb35c" }, svg);
        for (let i = 0; i < cols; i++) {
          const p = i * cell + cell / 2;
          el("line", { x1: cell / 2, y1: p, x2: width - cell / 2, y2: p, stroke: "#333" }, svg);
          el("line", { x1: p, y1: cell / 2, x2: p, y2: height - cell / 2, stroke: "#333" }, svg);
        }
      }
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const a = r * cols + c, x = c * cell, y = r * cell, v = cells[r][c];
          if (kind === "cells") {
            el("rect", { x: x + 2, y: y + 2, width: cell - 4, height: cell - 4, fill: "#fff",
              stroke: "#99a" }, svg);
          }
          if (v === 0 && share(a) > 0) {
            const pad = kind === "points" ? cell * 0.22 : 3; // Go: keep the lines visible
            const square = el("rect", { x: x + pad, y: y + pad, width: cell - 2 * pad,
              height: cell - 2 * pad,
              fill: hue(a), "fill-opacity": heat(a), class: "heat", "data-action": a,
              "data-share": share(a) }, svg);
            el("title", {}, square).textContent = tip(a);
          }
          if (v !== 0 && kind === "cells") {
            const mark = el("text", { x: x + cell / 2, y: y + cell * 0.68, "text-anchor": "middle",
              "font-size": cell * 0.6, fill: v === 1 ? "#c22" : "#225" }, svg);
            mark.textContent = v === 1 ? "X" : "O";
          } else if (v !== 0) {
            el("circle", { cx: x + cell / 2, cy: y + cell / 2, r: cell * 0.45,
              fill: v === 1 ? "#111" : "#fafafa", stroke: "#333" }, svg);
          }
          if (search && search.move === a) {
            el("rect", { x: x + 1, y: y + 1, width: cell - 2, height: cell - 2, fill: "none",
              stroke: "#0a7", "stroke-width": 3 }, svg);
          }
          const hit = el("rect", { x: x, y: y, width: cell, height: cell, fill: "transparent",
            class: "cell", "data-action": a, cursor: "pointer" }, svg);
          if (search) el("title", {}, hit).textContent = tip(a);
          hit.addEventListener("click", () => play(a));
        }
      }
    }
    drawStatus();
    drawSearch();
  }

  function drawStatus() {
    const status = $("status");
    $("moves").textContent = game && game.moves_text ? game.moves_text.join(" ") : "";
    if (!game) return;
    if (game.over) {
      const you = human() === 0 ? "first" : "second";
      status.textContent = game.result === "draw" ? "Game over: a draw."
        : game.result === you ? "Game over: you win." : "Game over: the agent wins.";
    } else if (game.to_play === human()) {
      status.textContent = search ? `The agent played ${search.text}. Your move.` : "Your move.";
    }
  }

  function drawSearch() {
    const table = $("search-table");
    table.innerHTML = "";
    if (!search) return;
    $("search-summary").textContent = `${search.simulations} simulations in ` +
      `${search.seconds.toFixed(2)} s; value for the agent ${search.value.toFixed(3)}; ` +
      `it played ${search.text}.`;
    $("pv").textContent = search.pv.join(" ");
    const order = search.visits.map((n, a) => a).filter((a) => search.visits[a] > 0)
      .sort((a, b) => search.visits[b] - search.visits[a]).slice(0, 8);
    const head = table.insertRow();
    for (const name of ["move", "N", "Q", "prior"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    const format = (a) => (agent.kind === "points" ? goPoint(a) : String(a + 1));
    for (const a of order) {
      const row = table.insertRow();
      for (const text of [format(a), search.visits[a], search.q[a].toFixed(3),
        search.priors[a].toFixed(3)]) row.insertCell().textContent = text;
    }
  }

  function goPoint(a) {
    const [n] = shape();
    if (a === n * n) return "pass";
    const letters = "ABCDEFGHJKLMNOPQRST";
    return `${letters[a % n]}${n - Math.floor(a / n)}`;
  }

  $("heat").addEventListener("change", () => { if (game) draw(); });
  $("new-game").addEventListener("click", newGame);
  $("agent").addEventListener("change", newGame);
  $("side").addEventListener("change", newGame);
  $("pass").addEventListener("click", () => { const [n] = shape(); play(n * n); });
  newGame();
})();
