// orchestrator dashboard: small shared behaviour, loaded on every page (deferred). The pages
// work without it; it adds:
//   <button data-open-dialog="ID">   opens <dialog id="ID"> as a modal
//   <button data-close-dialog>       closes the dialog it sits in
//   <form data-confirm="Sure?">      asks before submitting
//   live updates    while the page holds an element with data-live="1" (a run it shows is
//                   queued or running), it fetches its own URL every 2 s while the tab is
//                   visible and copies each [data-live-region] element's content from the
//                   fetched page when it changed; it stops once the fetched page is no
//                   longer live. A region holding the focus, an open <details>/<dialog> or
//                   a log being streamed is left alone, so nothing the user is doing is lost.
//   log streaming   <pre data-stream="URL"> follows a running try's log over server-sent
//                   events: lines are appended (as text, never as HTML), the view stays
//                   pinned to the bottom when it was there, and on `end` the page refreshes
//                   its live regions once. Polling pauses while a stream is open.
"use strict";

document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.openDialog);
    if (dialog && typeof dialog.showModal === "function") {
      event.preventDefault();
      dialog.showModal();
      const first = dialog.querySelector("textarea, input, select, button");
      if (first) first.focus();
    }
    return;
  }
  const closer = event.target.closest("[data-close-dialog]");
  if (closer) {
    const dialog = closer.closest("dialog");
    if (dialog) {
      event.preventDefault();
      dialog.close();
    }
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

(() => {
  const PERIOD_MS = 2000;
  const isLive = (doc) => doc.querySelector('[data-live="1"]') !== null;
  let live = isLive(document);
  let timer = null;
  let inFlight = false;
  // The page load itself counts as the first request of the period.
  let lastFetch = Date.now();

  const streaming = () => document.querySelector("pre[data-streaming]") !== null;

  // At most one request per PERIOD_MS, none while hidden, streaming or not live.
  function schedule() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (!live || document.hidden || streaming() || inFlight) return;
    const wait = Math.max(0, PERIOD_MS - (Date.now() - lastFetch));
    timer = setTimeout(refresh, wait);
  }

  async function refresh() {
    timer = null;
    if (inFlight || document.hidden) return;
    inFlight = true;
    lastFetch = Date.now();
    try {
      const response = await fetch(location.href, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "text/html" },
      });
      if (response.status >= 400 && response.status < 500) {
        live = false; // the run or task is gone: nothing more to follow
      } else if (response.ok) {
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        apply(doc);
        live = isLive(doc);
      }
    } catch (_) {
      // Server restarting or network down: try again next period.
    } finally {
      inFlight = false;
    }
    schedule();
  }

  function busy(region) {
    const focused = document.activeElement;
    if (focused && focused !== document.body && region.contains(focused)) return true;
    return region.querySelector("details[open], dialog[open], pre[data-streaming]") !== null;
  }

  function apply(doc) {
    for (const region of document.querySelectorAll("[data-live-region][id]")) {
      const fresh = doc.getElementById(region.id);
      if (!fresh || fresh.innerHTML === region.innerHTML || busy(region)) continue;
      const log = region.querySelector("pre.log");
      const pinned = !log || atBottom(log);
      region.innerHTML = fresh.innerHTML;
      const newLog = region.querySelector("pre.log");
      if (newLog && pinned) newLog.scrollTop = newLog.scrollHeight;
    }
    for (const flag of document.querySelectorAll("[data-live]")) {
      if (!isLive(doc)) flag.removeAttribute("data-live");
    }
    followStreams();
  }

  const atBottom = (el) => el.scrollHeight - el.scrollTop - el.clientHeight < 8;

  function lineElement(line) {
    const span = document.createElement("span");
    span.className = "log-line " + line.line;
    const ts = document.createElement("span");
    ts.className = "log-ts";
    ts.textContent = line.ts;
    const level = document.createElement("span");
    level.className = line.lvl;
    level.textContent = line.label;
    span.append(ts, level, " " + line.msg);
    return span;
  }

  function follow(pre) {
    pre.dataset.streaming = "1";
    // EventSource resumes after a dropped connection by itself, sending Last-Event-ID.
    const source = new EventSource(pre.dataset.stream);
    source.onmessage = (event) => {
      let lines;
      try {
        lines = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      const pinned = atBottom(pre);
      const batch = document.createDocumentFragment();
      for (const line of lines) batch.append(lineElement(line));
      pre.append(batch);
      if (pinned) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("end", () => {
      source.close();
      delete pre.dataset.streaming;
      pre.removeAttribute("data-stream");
      const indicator = document.getElementById("log-live");
      if (indicator) indicator.hidden = true;
      // The try ended: show its final state, even if the run (and so polling) is over.
      if (!inFlight) {
        lastFetch = 0;
        refresh();
      }
    });
  }

  function followStreams() {
    if (typeof EventSource !== "function") return;
    for (const pre of document.querySelectorAll("pre[data-stream]:not([data-streaming])")) follow(pre);
  }

  // A log opens at its newest lines, unless the whole of it was asked for.
  if (!new URLSearchParams(location.search).has("all")) {
    for (const pre of document.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight;
  }
  document.addEventListener("visibilitychange", schedule);
  followStreams();
  schedule();
})();
