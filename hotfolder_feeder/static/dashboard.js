// The floor dashboard: polls GET /api/floor and draws printers, jobs and failures.
//
// Elements are created once per printer, job and failure and then updated in place, so a
// button is never replaced while someone is pressing it. Data is written with textContent
// only, never as HTML.
"use strict";

const TOKEN_KEY = "hotfolder-feeder-admin-token";
const REFRESH_MS = 2000;
const SEARCH_DELAY_MS = 300;
const CONFIRM_MS = 5000;
const TOAST_MS = 6000;
const MAX_ERROR_LENGTH = 300;

const view = {
  query: "",
  loading: false,
  again: false,
  timer: null,
  lastSuccess: null,
  tokenRequest: null,
  printers: new Map(),
  jobs: new Map(),
  failures: new Map(),
};

// The API

class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

async function api(method, path, body) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, { method, headers: requestHeaders(token, body), body, cache: "no-store" });
    const data = await readJson(response);
    if (response.status === 401 || response.status === 403) {
      // A token that used to work was changed in the config: ask again.
      sessionStorage.removeItem(TOKEN_KEY);
      await askForToken(token ? data.reason || "the token was not accepted" : null);
      continue;
    }
    if (!response.ok) {
      throw new ApiError(response.status, data.reason || data.error || `HTTP ${response.status}`);
    }
    return data;
  }
}

function requestHeaders(token, body) {
  const headers = { Accept: "application/json", "X-Operator": "dashboard" };
  if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  return headers;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

// Asking for the admin token: one dialog, however many requests are waiting for it.

function askForToken(problem) {
  if (view.tokenRequest) {
    return view.tokenRequest;
  }
  const dialog = document.getElementById("token-dialog");
  const error = document.getElementById("token-error");
  error.hidden = !problem;
  error.textContent = problem ? `Not accepted: ${problem}` : "";
  view.tokenRequest = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.onsubmit = (event) => {
      event.preventDefault();
      const token = document.getElementById("token-input").value.trim();
      if (!token) {
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      document.getElementById("token-input").value = "";
      dialog.close();
      view.tokenRequest = null;
      resolve();
    };
  });
  // Escape would close the dialog and leave the page blank, because nothing loads without the token.
  dialog.oncancel = (event) => event.preventDefault();
  dialog.showModal();
  return view.tokenRequest;
}

// Polling

async function refresh() {
  if (view.loading) {
    view.again = true;
    return;
  }
  clearTimeout(view.timer);
  view.loading = true;
  const query = view.query;
  try {
    const path = query ? `/api/floor?q=${encodeURIComponent(query)}` : "/api/floor";
    const floor = await api("GET", path);
    if (query === view.query) {
      render(floor);
    }
    view.lastSuccess = new Date();
    showConnection(null);
  } catch (error) {
    showConnection(error);
  } finally {
    view.loading = false;
  }
  if (view.again) {
    view.again = false;
    refresh();
    return;
  }
  view.timer = setTimeout(refresh, REFRESH_MS);
}

function showConnection(error) {
  const connection = document.getElementById("connection");
  const notice = document.getElementById("notice");
  if (!error) {
    connection.className = "connection";
    connection.textContent = `Live · updated ${clockTime(view.lastSuccess)}`;
    notice.hidden = true;
    return;
  }
  connection.className = "connection lost";
  connection.textContent = "Connection lost";
  const since = view.lastSuccess ? ` since ${clockTime(view.lastSuccess)}` : "";
  notice.textContent = `No answer from the feeder${since}: ${error.message}. Retrying every ${REFRESH_MS / 1000} s.`;
  notice.hidden = false;
}

function render(floor) {
  renderSummary(floor.totals);
  renderPrinters(floor.printers);
  renderJobs(floor);
  renderFailures(floor.failures, floor.failures_total);
}

function renderSummary(totals) {
  const parts = [
    `${totals.online} of ${totals.printers} printers online`,
    `${totals.waiting} ${plural(totals.waiting, "file", "files")} waiting`,
    `${totals.queued} queued`,
    `${totals.failed} failed`,
  ];
  if (totals.stalled) {
    parts.push(`${totals.stalled} stalled`);
  }
  setText(document.getElementById("summary"), parts.join(" · "));
}

// Printers

function renderPrinters(printers) {
  const container = document.getElementById("printers");
  const elements = printers.map((printer) => {
    let card = view.printers.get(printer.name);
    if (!card) {
      card = createPrinterCard(printer.name);
      view.printers.set(printer.name, card);
    }
    updatePrinterCard(card, printer);
    return card.root;
  });
  placeChildren(container, elements);
  forgetMissing(view.printers, new Set(printers.map((printer) => printer.name)));
}

function createPrinterCard(name) {
  const card = { slots: {} };
  card.root = element("article", "printer");
  card.root.dataset.printer = name;

  const head = element("div", "printer-head");
  head.append(element("h3", "printer-name", name), (card.slots.state = element("span", "badge large")));

  const waiting = element("div", "waiting");
  card.slots.waiting = element("span", "waiting-number");
  card.slots.waiting.dataset.figure = "waiting";
  waiting.append(card.slots.waiting, element("span", "waiting-label", "in hot folder"));

  const stats = element("dl", "stats");
  for (const [key, label] of [["staged", "staged"], ["queued", "queued"], ["taken", "taken in last hour"], ["stalled", "stalled"]]) {
    const pair = element("div");
    card.slots[key] = element("dd");
    card.slots[key].dataset.figure = key;
    pair.append(element("dt", "", label), card.slots[key]);
    card.slots[`${key}Pair`] = pair;
    stats.append(pair);
  }

  card.slots.outage = element("p", "outage-reason");
  const foot = element("div", "printer-foot");
  card.slots.oldest = element("p", "oldest");
  card.slots.pause = button("Pause", () => setPaused(name, !card.paused));
  foot.append(card.slots.oldest, card.slots.pause);

  card.root.append(head, waiting, stats, card.slots.outage, foot);
  return card;
}

function updatePrinterCard(card, printer) {
  card.paused = printer.paused;
  card.root.className = `printer ${printer.state}`;
  setText(card.slots.state, printer.state);
  card.slots.state.className = `badge large ${printer.state}`;

  setText(card.slots.waiting, printer.max_waiting ? `${printer.waiting} / ${printer.max_waiting}` : String(printer.waiting));
  setText(card.slots.staged, String(printer.staged));
  setText(card.slots.queued, String(printer.queued));
  setText(card.slots.taken, String(printer.taken_last_hour));
  setText(card.slots.stalled, String(printer.stalled));
  card.slots.stalledPair.className = printer.stalled ? "alert" : "";

  const oldest = printer.oldest_waiting;
  card.slots.oldest.replaceChildren();
  if (oldest) {
    card.slots.oldest.append("Oldest: ", element("strong", "", formatAge(oldest.age_seconds)), ` · ${oldest.name}`);
    card.slots.oldest.title = `${oldest.name} (job ${oldest.job_id})`;
  } else {
    card.slots.oldest.append("Hot folder empty");
    card.slots.oldest.title = "";
  }

  card.slots.outage.hidden = !printer.outage;
  setText(card.slots.outage, printer.outage ? `Outage: ${printer.outage}` : "");
  setText(card.slots.pause, printer.paused ? "Resume" : "Pause");
}

async function setPaused(printer, paused) {
  const action = paused ? "pause" : "resume";
  await act(`/api/printers/${encodeURIComponent(printer)}/${action}`, () => `${printer} ${paused ? "paused" : "resumed"}`);
}

// Jobs

function renderJobs(floor) {
  const title = floor.query ? `Search “${floor.query}” (last ${floor.search_days} days)` : "Jobs today";
  setText(document.getElementById("jobs-title"), title);
  const empty = document.getElementById("jobs-empty");
  empty.hidden = floor.jobs.length > 0;
  setText(empty, floor.query ? "No job matches." : "No jobs today.");

  const body = document.querySelector("#jobs tbody");
  const rows = floor.jobs.map((job) => {
    let row = view.jobs.get(job.id);
    if (!row) {
      row = createJobRow(job.id);
      view.jobs.set(job.id, row);
    }
    updateJobRow(row, job);
    return row.root;
  });
  placeChildren(body, rows);
  forgetMissing(view.jobs, new Set(floor.jobs.map((job) => job.id)));
}

function createJobRow(jobId) {
  const row = { slots: {}, job: null };
  row.root = element("tr");
  row.root.dataset.job = String(jobId);

  const idCell = element("td");
  idCell.append(element("span", "job-id", String(jobId)), (row.slots.kind = element("span", "job-kind")), (row.slots.priority = element("span", "priority")));
  const refsCell = element("td", "job-refs");
  refsCell.append((row.slots.refs = element("span")), (row.slots.moreRefs = element("span", "job-refs-more")));
  row.slots.received = element("td", "job-received");

  const progressCell = element("td", "progress-cell");
  const bar = element("div", "progress");
  bar.append((row.slots.pickedUp = element("span", "picked-up")), (row.slots.inFolder = element("span", "in-folder")), (row.slots.failed = element("span", "failed")));
  progressCell.append(bar, (row.slots.progressText = element("div", "progress-text")));

  const stateCell = element("td");
  stateCell.append((row.slots.state = element("span", "badge")));

  const actions = element("td", "actions");
  row.slots.retry = button("Retry", () => jobAction(row, "retry"));
  row.slots.prioritize = button("First", () => jobAction(row, "prioritize"));
  row.slots.prioritize.title = "Print this job before everything waiting";
  row.slots.cancel = button("Cancel", () => confirmCancel(row), "danger");
  actions.append(row.slots.retry, row.slots.prioritize, row.slots.cancel);

  row.root.append(idCell, refsCell, row.slots.received, progressCell, stateCell, actions);
  return row;
}

function updateJobRow(row, job) {
  row.job = job;
  setText(row.slots.kind, job.kind === "artwork_processing" ? "artwork processing" : "consolidation");
  setText(row.slots.priority, job.priority > 0 && job.in_progress ? `priority ${job.priority}` : "");

  setText(row.slots.refs, job.orders[0] || "–");
  row.slots.refs.title = job.orders.join(", ");
  const more = job.orders.length - 1;
  setText(row.slots.moreRefs, more > 0 ? `+${more} ${plural(more, "order", "orders")}` : "");
  setText(row.slots.received, receivedTime(job.received_at));

  const total = Math.max(job.total, 1);
  row.slots.pickedUp.style.width = `${(100 * job.picked_up) / total}%`;
  row.slots.inFolder.style.width = `${(100 * job.delivered) / total}%`;
  row.slots.failed.style.width = `${(100 * job.failed) / total}%`;
  row.slots.progressText.replaceChildren(element("strong", "", `${job.picked_up} of ${job.total}`), " picked up");
  if (job.delivered) {
    row.slots.progressText.append(` · ${job.delivered} in hot folder`);
  }
  if (job.failed) {
    row.slots.progressText.append(` · ${job.failed} failed`);
  }

  setText(row.slots.state, job.state.replace("_", " "));
  row.slots.state.className = `badge ${job.state}`;
  row.slots.retry.disabled = job.failed === 0;
  row.slots.prioritize.disabled = job.in_progress === 0;
  row.slots.cancel.disabled = job.in_progress + job.delivered + job.failed === 0;
}

function confirmCancel(row) {
  if (!row.confirming) {
    row.confirming = true;
    setText(row.slots.cancel, "Confirm");
    row.slots.cancel.title = "Click again to cancel this job";
    row.slots.cancel.className = "confirm";
    row.confirmTimer = setTimeout(() => resetCancel(row), CONFIRM_MS);
    return;
  }
  resetCancel(row);
  jobAction(row, "cancel");
}

function resetCancel(row) {
  clearTimeout(row.confirmTimer);
  row.confirming = false;
  setText(row.slots.cancel, "Cancel");
  row.slots.cancel.className = "danger";
  row.slots.cancel.title = "";
}

function jobAction(row, action) {
  return runJobAction(row.job.id, action);
}

async function runJobAction(jobId, action) {
  const describe = {
    retry: (answer) => `Job ${jobId}: ${answer.retried} ${plural(answer.retried, "file", "files")} retried`,
    prioritize: (answer) => `Job ${jobId} goes first (priority ${answer.priority})`,
    cancel: (answer) => `Job ${jobId} cancelled: ${answer.cancelled} dropped, ${answer.recalled} recalled from the hot folder`,
  }[action];
  await act(`/api/jobs/${jobId}/${action}`, describe);
}

// Failures

function renderFailures(failures, total) {
  const count = document.getElementById("failures-count");
  setText(count, total ? String(total) : "");
  document.getElementById("failures-empty").hidden = failures.length > 0;

  const list = document.getElementById("failures");
  const items = failures.map((failure) => {
    let item = view.failures.get(failure.delivery_id);
    if (!item) {
      item = createFailure(failure);
      view.failures.set(failure.delivery_id, item);
    }
    updateFailure(item, failure);
    return item.root;
  });
  placeChildren(list, items);
  forgetMissing(view.failures, new Set(failures.map((failure) => failure.delivery_id)));
}

function createFailure(failure) {
  const item = { slots: {} };
  item.root = element("li", "failure");
  item.root.dataset.delivery = String(failure.delivery_id);
  const head = element("div", "failure-head");
  head.append(
    (item.slots.job = element("span", "failure-job")),
    (item.slots.time = element("span", "job-received")),
    button("Retry", () => runJobAction(failure.job_id, "retry")),
  );
  item.slots.name = element("p", "failure-name");
  item.slots.reason = element("p", "failure-reason");
  item.slots.error = element("p", "failure-error");
  item.root.append(head, item.slots.name, item.slots.reason, item.slots.error);
  return item;
}

function updateFailure(item, failure) {
  setText(item.slots.job, `Job ${failure.job_id}${failure.printer ? ` · ${failure.printer}` : ""}`);
  setText(item.slots.time, receivedTime(failure.failed_at));
  setText(item.slots.name, failure.name);
  const attempts = failure.attempts ? ` after ${failure.attempts} ${plural(failure.attempts, "attempt", "attempts")}` : "";
  setText(item.slots.reason, `${(failure.reason || "failed").replaceAll("_", " ")}${attempts}`);
  const error = failure.error || "";
  setText(item.slots.error, error.length > MAX_ERROR_LENGTH ? `${error.slice(0, MAX_ERROR_LENGTH)}…` : error);
  item.slots.error.title = error;
}

// Actions

async function act(path, describe) {
  try {
    const answer = await api("POST", path, "{}");
    showToast(describe(answer), false);
  } catch (error) {
    showToast(`Failed: ${error.message}`, true);
  }
  refresh();
}

function showToast(message, isError) {
  const toast = document.getElementById("toast");
  toast.textContent = message;
  toast.className = isError ? "toast error-toast" : "toast";
  toast.hidden = false;
  clearTimeout(view.toastTimer);
  view.toastTimer = setTimeout(() => {
    toast.hidden = true;
  }, TOAST_MS);
}

// DOM helpers

function element(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function button(label, onClick, className = "") {
  const node = element("button", className, label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

// Put `children` into `container` in this order, moving only the nodes that are out of place.
function placeChildren(container, children) {
  children.forEach((child, index) => {
    if (container.children[index] !== child) {
      container.insertBefore(child, container.children[index] || null);
    }
  });
  while (container.children.length > children.length) {
    container.lastElementChild.remove();
  }
}

function forgetMissing(map, keep) {
  for (const key of map.keys()) {
    if (!keep.has(key)) {
      map.delete(key);
    }
  }
}

// Formatting

function plural(count, one, many) {
  return count === 1 ? one : many;
}

function formatAge(seconds) {
  if (seconds < 60) {
    return `${Math.floor(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h ${minutes % 60} min`;
  }
  return `${Math.floor(hours / 24)} days`;
}

function clockTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function receivedTime(iso) {
  if (!iso) {
    return "";
  }
  const date = new Date(iso);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) {
    return time;
  }
  return `${date.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${time}`;
}

// Start

document.addEventListener("DOMContentLoaded", () => {
  let searchTimer = null;
  document.getElementById("search").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      view.query = event.target.value.trim();
      refresh();
    }, SEARCH_DELAY_MS);
  });
  refresh();
});
