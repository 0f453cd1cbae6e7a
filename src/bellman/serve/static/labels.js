// The labelling page: fetch a prompt and K responses (POST /api/labels/sample), let the person
// order them best first (drag and drop, or the arrow buttons), and POST the ranking
// (/api/labels/submit); the server appends it to the --labels file. Plain JS, no framework.
"use strict";
(function () {
  const settingsTag = document.getElementById("labels-settings");
  if (!settingsTag) return; // no --labels file or no model: the page only says so
  const settings = JSON.parse(settingsTag.textContent);
  const list = document.getElementById("responses");
  const promptTag = document.getElementById("prompt");
  const status = document.getElementById("labels-status");
  const submitButton = document.getElementById("submit-ranking");
  let current = null; // {id, prompt, responses} of the set on the page
  let dragged = null;

  function say(text, error) {
    status.className = error ? "error" : "muted";
    status.textContent = text;
  }

  async function post(path, body) {
    const reply = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const result = await reply.json();
    if (!reply.ok) throw new Error(result.error || reply.statusText);
    return result;
  }

  function renumber() {
    list.querySelectorAll("li").forEach((item, index) => {
      item.querySelector(".rank").textContent = String(index + 1);
    });
  }

  function move(item, step) {
    const other = step < 0 ? item.previousElementSibling : item.nextElementSibling;
    if (!other) return;
    list.insertBefore(item, step < 0 ? other : other.nextElementSibling);
    renumber();
  }

  function button(label, title, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", action);
    return b;
  }

  function entry(text) {
    const item = document.createElement("li");
    item.draggable = true;
    const rank = document.createElement("span");
    rank.className = "rank";
    const body = document.createElement("span");
    body.className = text.trim() ? "text" : "text muted";
    body.textContent = text.trim() ? text : "(an empty response)";  // still rankable
    item.dataset.text = text;
    item.append(rank, button("\u25b2", "move up", () => move(item, -1)),
                button("\u25bc", "move down", () => move(item, 1)), body);
    item.addEventListener("dragstart", () => { dragged = item; item.classList.add("dragging"); });
    item.addEventListener("dragend", () => { item.classList.remove("dragging"); dragged = null; });
    item.addEventListener("dragover", (event) => {
      event.preventDefault();
      if (!dragged || dragged === item) return;
      const box = item.getBoundingClientRect();
      const after = event.clientY > box.top + box.height / 2;
      list.insertBefore(dragged, after ? item.nextElementSibling : item);
      renumber();
    });
    return item;
  }

  async function next() {
    submitButton.disabled = true;
    say("sampling " + settings.k + " responses\u2026");
    try {
      current = await post("/api/labels/sample", { run: settings.run, k: settings.k });
      promptTag.textContent = current.prompt;
      list.replaceChildren(...current.responses.map(entry));
      renumber();
      submitButton.disabled = false;
      say("prompt " + (current.prompt_number + 1) + " of " + current.prompts + " (seed " +
          current.seed + "): rank the " + current.responses.length + " responses, best first");
    } catch (error) {
      say(String(error.message || error), true);
    }
  }

  submitButton.addEventListener("click", async () => {
    if (!current) return;
    submitButton.disabled = true;
    const ranking = [...list.querySelectorAll("li")].map((item) => item.dataset.text);
    try {
      const result = await post("/api/labels/submit", { id: current.id, ranking: ranking });
      current = null;
      await next();
      if (status.className !== "error") say("saved to " + result.file + "; " + status.textContent);
    } catch (error) {
      submitButton.disabled = false;
      say(String(error.message || error), true);
    }
  });
  document.getElementById("next-prompt").addEventListener("click", next);
  next();
})();
