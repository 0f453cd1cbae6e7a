// The watch page: play the agent's env on the server and show its frames as they come
// (server-sent events, one JPEG per frame), with each episode's return.
"use strict";
(function () {
  const name = JSON.parse(document.getElementById("watch-agent").textContent);
  const $ = (id) => document.getElementById(id);
  let source = null;

  function stop(message) {
    if (source) source.close();
    source = null;
    if (message) $("watch-status").textContent = message;
  }

  function play() {
    stop();
    const query = new URLSearchParams({ seed: $("seed").value, episodes: $("episodes").value,
      fps: $("fps").value });
    source = new EventSource(`/api/watch/${encodeURIComponent(name)}/stream?${query}`);
    $("watch-status").textContent = "Starting...";
    source.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      $("frame").src = frame.frame;
      $("watch-status").textContent =
        `Episode ${frame.episode}, step ${frame.step}, return ${frame.return}`;
      if (frame.done) {
        const row = $("episodes-table").insertRow();
        for (const text of [frame.episode, frame.return, frame.step]) {
          row.insertCell().textContent = text;
        }
      }
    };
    source.addEventListener("end", () => stop("Finished."));
    source.onerror = () => stop("The stream stopped (the server refused it or went away).");
  }

  $("play").addEventListener("click", play);
  $("stop").addEventListener("click", () => stop("Stopped."));
  // an env that renders no frames: say so now (an EventSource cannot read the 400's message)
  fetch(`/api/watch/${encodeURIComponent(name)}/check`).then(async (response) => {
    if (response.ok) return;
    $("play").disabled = true;
    $("watch-status").textContent = (await response.json()).error;
    $("watch-status").className = "status error";
  });
})();
