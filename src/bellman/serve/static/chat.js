// The chat page: send one prompt to every policy of the recipe (POST /api/chat) and show the
// answers side by side, each with its learned reward, true score and KL to the SFT model.
"use strict";
(function () {
  const form = document.getElementById("chat-form");
  if (!form) return; // no policy given: the page only says so
  const status = document.getElementById("chat-status");
  const answers = document.getElementById("answers");
  const value = (id) => document.getElementById(id).value;

  function number(x, digits) {
    return x === null || x === undefined ? "\u2014" : Number(x).toFixed(digits);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function card(result, item) {
    const div = document.createElement("div");
    div.className = "panel chat-answer";
    div.dataset.run = item.run;
    const title = document.createElement("h2");
    title.textContent = item.run + " (" + item.algo + ")";
    const text = document.createElement("p");
    const prompt = document.createElement("b");
    prompt.textContent = result.prompt;
    const response = document.createElement("span");
    response.className = "response";
    response.textContent = item.response;
    text.append(prompt, response);
    const table = document.createElement("table");
    table.className = "list";
    const rows = [
      ["learned reward", number(item.learned_reward, 3), "learned"],
      ["true score (" + result.judge + ")", number(item.true_score, 3), "true"],
      ["KL to SFT (nats)", number(item.kl, 3), "kl"],
      ["tokens", String(item.tokens), "tokens"],
    ];
    for (const [label, shown, key] of rows) {
      const tr = document.createElement("tr");
      const td = cell(shown);
      td.dataset.key = key;
      tr.append(cell(label), td);
      table.append(tr);
    }
    div.append(title, text, table);
    return div;
  }

  const suggest = document.getElementById("suggest");
  suggest.addEventListener("change", () => {
    if (suggest.value) document.getElementById("prompt").value = suggest.value;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      prompt: value("prompt"),
      seed: Number(value("seed")),
      max_new_tokens: Number(value("max_new_tokens")),
      temperature: Number(value("temperature")),
      judge: value("judge"),
    };
    status.className = "muted";
    status.textContent = "sampling\u2026";
    document.getElementById("send").disabled = true;
    try {
      const reply = await fetch("/api/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const result = await reply.json();
      if (!reply.ok) throw new Error(result.error || reply.statusText);
      answers.replaceChildren(...result.answers.map((item) => card(result, item)));
      status.textContent = result.notes.join(" ") || "seed " + result.seed;
    } catch (error) {
      status.className = "error";
      status.textContent = String(error.message || error);
    } finally {
      document.getElementById("send").disabled = false;
    }
  });
})();
