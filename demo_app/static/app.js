// Shockproof demo page: progressive enhancement of the server-rendered HTML.
// No inline scripts anywhere (the page is served with a strict Content-Security-Policy).
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  let currentTitle = null;

  // -- friendly messages from problem+json answers ------------------------------------------

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  function notify(message, kind, problem) {
    const box = $("#notice");
    box.replaceChildren(text("strong", message));
    box.className = "notice notice-" + (kind || "info");
    if (problem && (problem.error_id || problem.trace_id)) {
      box.append(text("span", " Error id " + (problem.error_id || "-") +
        ", trace id " + (problem.trace_id || "-") + ".", "ids"));
    }
    box.hidden = false;
  }

  const FRIENDLY = {
    logic: "Something broke on our side. We have the details; please try again.",
    validation: "Please check what you entered.",
    network: "A service we depend on is having trouble. Please try again shortly.",
    io: "We could not save or read that just now. Your previous data is safe.",
  };

  async function readProblem(response) {
    try {
      return await response.json();
    } catch (e) {
      return { title: response.statusText || "Error", status: response.status };
    }
  }

  function explain(problem, response) {
    const detail = problem.kind === "logic" ? FRIENDLY.logic : (problem.detail || FRIENDLY[problem.kind] || "");
    let message = (problem.title || "Error") + ": " + detail;
    const wait = response && response.headers.get("Retry-After");
    if (wait) message += " (retry in " + wait + " s)";
    return message;
  }

  async function call(url, options) {
    let response;
    try {
      response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    } catch (e) {
      notify("The server cannot be reached. Is the demo still running?", "error");
      return null;
    }
    if (response.ok) return response;
    const problem = await readProblem(response);
    notify(explain(problem, response), problem.kind === "validation" ? "warn" : "error", problem);
    response.problem = problem;
    return response;
  }

  function showFieldErrors(form, problem) {
    $$(".field-error", form).forEach((p) => { p.textContent = ""; });
    ((problem && problem.errors) || []).forEach((err) => {
      const slot = $('.field-error[data-field="' + CSS.escape(err.field) + '"]', form);
      if (slot) slot.textContent = err.message;
    });
  }

  function userHeaders() {
    const user = $("#x-user").value.trim();
    return user ? { "X-User": user } : {};
  }

  // -- catalog --------------------------------------------------------------------------------

  function paintPosters() {
    $$(".poster").forEach((el) => {
      if (el.dataset.bg) el.style.background = "linear-gradient(135deg, " + el.dataset.bg + ", " + (el.dataset.accent || el.dataset.bg) + ")";
    });
  }

  async function showDetails(id) {
    const response = await call("/api/titles/" + encodeURIComponent(id));
    if (!response || !response.ok) return;
    const t = await response.json();
    const box = $("#details");
    box.replaceChildren(text("h3", t.name), text("p", t.synopsis || ""),
      text("p", "Recommended next: " + ((t.recommendations || []).join(", ") || "nothing yet"), "meta"));
    if (t.degraded) box.append(text("p", "Shown from the last good copy: the catalog service is down.", "banner banner-warn"));
    box.hidden = false;
  }

  // -- player and progress ----------------------------------------------------------------------

  function play(id, name) {
    currentTitle = id;
    const video = $("#video");
    video.src = "/api/stream/" + encodeURIComponent(id);
    video.play().catch(() => {});
    $("#now-playing").textContent = "Now playing: " + name;
    $("#save-progress").disabled = false;
    $("#load-progress").disabled = false;
    location.hash = "#player";
  }

  async function saveProgress() {
    const video = $("#video");
    const typed = parseFloat($("#position").value);
    const position = video.currentTime > 0 ? video.currentTime : (isNaN(typed) ? 0 : typed);
    $("#position").value = position.toFixed(1);
    const response = await call("/api/progress/" + currentTitle, {
      method: "PUT",
      headers: Object.assign({ "Content-Type": "application/json" }, userHeaders()),
      body: JSON.stringify({ position_s: position }),
    });
    if (response && response.ok) notify("Progress saved at " + position.toFixed(1) + " s.", "ok");
  }

  async function loadProgress() {
    const response = await call("/api/progress/" + currentTitle, { headers: userHeaders() });
    if (!response || !response.ok) return;
    const saved = await response.json();
    $("#position").value = saved.position_s;
    $("#video").currentTime = saved.position_s;
    notify("Resumed at " + saved.position_s + " s.", "ok");
  }

  // -- forms ---------------------------------------------------------------------------------

  async function signup(event) {
    event.preventDefault();
    const form = event.target;
    const body = Object.fromEntries(new FormData(form).entries());
    const response = await call(form.action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response) return;
    showFieldErrors(form, response.problem);
    if (response.ok) {
      const account = await response.json();
      form.reset();
      notify("Welcome, " + account.display_name + "! Your progress is now saved to your account.", "ok");
    }
  }

  async function upload(event) {
    event.preventDefault();
    const form = event.target;
    const result = $("#upload-result");
    result.hidden = true;
    const response = await call(form.action, { method: "POST", body: new FormData(form) });
    if (!response) return;
    showFieldErrors(form, response.problem);
    if (response.ok) {
      const meta = await response.json();
      result.replaceChildren(text("p", "Stored upload " + meta.id + ": " + meta.size_bytes + " bytes, " +
        meta.duration_s + " s, " + Math.round(meta.bitrate_bps / 1000) + " kbit/s."));
      result.hidden = false;
      notify("Upload analysed and stored.", "ok");
    }
  }

  function guessDuration(event) {
    const file = event.target.files[0];
    const input = $('#upload-form input[name="duration"]');
    if (!file) return;
    const probe = document.createElement("video");
    probe.preload = "metadata";
    probe.onloadedmetadata = () => {
      if (isFinite(probe.duration) && probe.duration > 0) input.value = probe.duration.toFixed(2);
      URL.revokeObjectURL(probe.src);
    };
    probe.src = URL.createObjectURL(file);
  }

  document.addEventListener("DOMContentLoaded", () => {
    paintPosters();
    $$(".js-details").forEach((b) => b.addEventListener("click", () => showDetails(b.dataset.id)));
    $$(".js-play").forEach((b) => b.addEventListener("click", () => play(b.dataset.id, b.dataset.name)));
    $("#save-progress").addEventListener("click", saveProgress);
    $("#load-progress").addEventListener("click", loadProgress);
    $("#signup-form").addEventListener("submit", signup);
    $("#upload-form").addEventListener("submit", upload);
    $('#upload-form input[name="file"]').addEventListener("change", guessDuration);
    $("#video").addEventListener("error", () => notify("This title cannot be played right now.", "error"));
  });
})();
