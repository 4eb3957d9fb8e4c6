/* Shockproof trace viewer: live refresh, keyboard navigation, copy, waterfall helpers.
 * Plain script, no build step, no inline handlers (the Content-Security-Policy allows
 * only this file). Everything it inserts is HTML the server rendered and escaped. */
(function () {
  "use strict";

  var PAUSE_KEY = "shockproof.viewer.paused";
  var body = document.body;
  var live = document.getElementById("live");
  var toggle = document.getElementById("live-toggle");
  var statusEl = document.getElementById("live-status");
  var interval = parseInt(body.getAttribute("data-refresh-ms") || "3000", 10);
  var timer = null;
  var inFlight = false;
  var selectedKey = null;
  var lastHtml = null;

  function storedPause() {
    try { return window.localStorage.getItem(PAUSE_KEY) === "1"; } catch (e) { return false; }
  }
  function storePause(value) {
    try { window.localStorage.setItem(PAUSE_KEY, value ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  var paused = storedPause();

  function say(text, state) {
    if (!statusEl) { return; }
    statusEl.textContent = text;
    statusEl.className = "muted" + (state ? " " + state : "");
  }

  /* -- live refresh ------------------------------------------------------------- */

  function liveUrl() { return live ? live.getAttribute("data-live") : null; }

  function showPaused() {
    if (!toggle) { return; }
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.textContent = paused ? "Resume live" : "Pause live";
    say(paused ? "paused" : "live", paused ? "paused" : "");
  }

  function setPaused(value) {
    paused = value;
    storePause(value);
    showPaused();
    if (!paused) { refresh(); }
  }

  function refresh() {
    var url = liveUrl();
    if (!url || paused || inFlight || document.hidden) { return; }
    inFlight = true;
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        if (paused) { return; }  /* paused while the request was out: keep the page still */
        if (typeof data.html === "string" && data.html !== lastHtml) {
          replaceRegion(data.html);
        }
        say("live · " + new Date().toLocaleTimeString(), "");
      })
      .catch(function () { if (!paused) { say("offline, retrying", "offline"); } })
      .then(function () { inFlight = false; });
  }

  function replaceRegion(html) {
    var focused = live.contains(document.activeElement);
    live.innerHTML = html;
    lastHtml = html;
    if (selectedKey !== null) {
      var row = live.querySelector('[data-key="' + cssEscape(selectedKey) + '"]');
      if (row) { select(row, focused); }
    }
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/["\\]/g, "\\$&");
  }

  function startLive() {
    if (!live || !liveUrl()) { return; }
    if (live.hasAttribute("data-live-paused")) { paused = true; }
    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", function () { setPaused(!paused); });
    }
    showPaused();
    timer = window.setInterval(refresh, Math.max(500, interval));
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
  }

  /* -- keyboard and mouse navigation ----------------------------------------------- */

  function rows() {
    var scope = document.querySelector(".waterfall") ? document : (live || document);
    return Array.prototype.slice.call(scope.querySelectorAll("[data-href], [data-span]"));
  }

  function current() { return document.querySelector(".sel[data-href], .sel[data-span]"); }

  function select(row, focus) {
    var old = current();
    if (old && old !== row) { old.classList.remove("sel"); }
    row.classList.add("sel");
    selectedKey = row.getAttribute("data-key") || row.id || null;
    if (!row.hasAttribute("tabindex")) { row.setAttribute("tabindex", "-1"); }
    if (focus !== false) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var all = rows();
    if (!all.length) { return; }
    var index = all.indexOf(current());
    var next = index < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, index + step));
    select(all[next], true);
  }

  function open(row) {
    if (!row) { return; }
    var href = row.getAttribute("data-href");
    if (href) { window.location.assign(href); return; }
    var details = row.querySelector("details.span-details");
    if (details) { details.open = !details.open; return; }
    var more = row.querySelector("button.more");
    if (more) { expand(more); }
  }

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) { return; }
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "Enter" && current() && !event.target.closest("a, button, summary")) {
      open(current()); event.preventDefault();
    }
    else if (event.key === "/") {
      var field = document.querySelector(".filters input, .filters select");
      if (field) { field.focus(); event.preventDefault(); }
    }
    else if (event.key === "p" && live && toggle && !toggle.hidden) { setPaused(!paused); }
  });

  document.addEventListener("click", function (event) {
    var row = event.target.closest("[data-href]");
    if (!row || event.target.closest("a, button, summary, input, select")) { return; }
    if (event.ctrlKey || event.metaKey || event.button !== 0) { return; }
    select(row, false);
    window.location.assign(row.getAttribute("data-href"));
  });

  document.addEventListener("click", function (event) {
    var row = event.target.closest("[data-span]");
    if (!row || event.target.closest("a, button, details, .chain")) { return; }
    select(row, false);
    if (!window.getSelection().toString()) { open(row); }
  });

  /* -- filters submit on change ------------------------------------------------------ */

  Array.prototype.forEach.call(document.querySelectorAll("form.filters"), function (form) {
    if (form.hasAttribute("data-autosubmit")) {
      form.addEventListener("change", function (event) {
        if (event.target.tagName === "SELECT") { form.requestSubmit(); }
      });
    }
    form.addEventListener("submit", function () {  /* leave empty filters out of the URL */
      Array.prototype.forEach.call(form.elements, function (field) {
        if (field.name && field.value === "") { field.disabled = true; }
      });
    });
  });
  window.addEventListener("pageshow", function () {  /* back from the cache: fields usable */
    Array.prototype.forEach.call(document.querySelectorAll("form.filters [disabled]"),
      function (field) { field.disabled = false; });
  });

  /* -- copy the trace id ---------------------------------------------------------------- */

  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy-target]"), function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy-target"));
      if (!source) { return; }
      var text = source.textContent.trim();
      var done = function () {
        button.classList.add("done");
        button.textContent = "Copied";
        window.setTimeout(function () { button.classList.remove("done"); button.textContent = "Copy trace id"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
      } else {
        selectText(source);
      }
    });
  });

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  /* -- the waterfall: jump to the first error, details on demand ---------------------- */

  var waterfall = document.querySelector(".waterfall[data-first-error]");
  if (waterfall) {
    var first = waterfall.getAttribute("data-first-error");
    var target = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
    var row = target || (first ? document.getElementById(first) : null);
    if (row) {
      select(row, false);
      row.scrollIntoView({ block: "center" });
      row.focus({ preventScroll: true });
    }
    waterfall.addEventListener("click", function (event) {
      var button = event.target.closest("button.more");
      if (button) { event.stopPropagation(); expand(button); }
    }, true);
  }

  /* A big trace's ordinary spans have a "more" button instead of their details: the first
   * click turns it into a <details> filled from the server; later toggles are native. */
  function expand(button) {
    var owner = button.closest("[data-span]");
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    var holder = document.createElement("div");
    details.className = "span-details";
    details.open = true;
    summary.textContent = "details";
    holder.className = "lazy muted";
    holder.textContent = "loading…";
    details.appendChild(summary);
    details.appendChild(holder);
    button.replaceWith(details);
    var url = waterfall.getAttribute("data-spans") + owner.id.replace(/^span-/, "");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) { holder.outerHTML = html; })
      .catch(function () { holder.textContent = "could not load the details"; });
  }

  startLive();
}());
