// The page's one script: it calls the same /api routes a script or a CRM would.
// Spreadsheet text is only ever written with textContent or input.value, never as HTML.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: `The server answered ${response.status}.` }; }
  return { status: response.status, ok: response.ok, data };
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

// -- 1. upload ---------------------------------------------------------------------------------
function setUpUpload(form) {
  const input = $("#file", form), status = $("#upload-status"), problem = $("#upload-error");
  async function send(file) {
    problem.textContent = "";
    status.textContent = `Uploading and checking ${file.name}…`;
    const body = new FormData();
    body.append("file", file);
    const { ok, data } = await api("POST", "/api/files", body);
    if (ok || data.needs_columns) { window.location.assign(`/files/${encodeURIComponent(data.id)}`); return; }
    status.textContent = "";
    problem.textContent = data.error;
  }
  input.addEventListener("change", () => { if (input.files.length) send(input.files[0]); });
  form.addEventListener("submit", (event) => event.preventDefault());
  for (const name of ["dragenter", "dragover"]) {
    form.addEventListener(name, (event) => { event.preventDefault(); form.classList.add("over"); });
  }
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (event) => {
    event.preventDefault();
    form.classList.remove("over");
    if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
  });
}

// -- 2/3. check, fix, send ---------------------------------------------------------------------
function setUpCheck(main) {
  const id = main.dataset.upload, host = main.dataset.host, table = $("#rows"), only = $("#only-problems");
  const sendButton = $("#send"), confirmBox = $("#confirm"), sendError = $("#send-error");

  function showCounts(counts, toSend) {
    for (const [name, value] of Object.entries(counts)) {
      const cell = $(`[data-count="${name}"]`);
      if (cell) cell.textContent = String(value);
    }
    if (sendButton && toSend !== undefined) {
      sendButton.dataset.toSend = String(toSend);
      sendButton.textContent = toSend ? `Send ${plural(toSend, "call")} to ${host}` : "Nothing to send";
      sendButton.disabled = !toSend;
      $("#nothing-to-send").hidden = Boolean(toSend);
    }
  }
  function filter() {
    table.classList.toggle("only-problems", only.checked);
    const shown = table.querySelector("tbody tr:not(.fine), tbody tr.edited");  // what the switch leaves in view
    $("#all-fine").hidden = !only.checked || shown !== null;
  }
  only.addEventListener("change", filter);
  filter();

  async function patch(tr, change) {
    const row = tr.dataset.row;
    tr.setAttribute("aria-busy", "true");
    const { ok, data } = await api("PATCH", `/api/files/${encodeURIComponent(id)}/rows/${row}`, change);
    tr.removeAttribute("aria-busy");
    if (!ok) { $(".message", tr).textContent = data.error; return; }
    tr.dataset.status = data.status;
    tr.classList.add("edited");
    tr.classList.toggle("fine", data.status === "ready" || data.status === "skipped");
    const badge = $(".status", tr);
    badge.textContent = data.status;
    badge.dataset.status = data.status;
    $(".message", tr).textContent = data.message;
    showCounts({ ...data.counts, duplicates: data.duplicates }, data.to_send);
    showWarnings($("#warnings"), data.warnings);
    showPreviews(data.previews);
  }
  function showPreviews(previews) {  // the first requests as they now stand (an excluded row is not among them)
    const box = $("#previews");
    if (!box || !previews) return;
    box.replaceChildren(...previews.map((text) => {
      const pre = document.createElement("pre");
      pre.textContent = text;
      return pre;
    }));
  }
  table.addEventListener("change", (event) => {
    const input = event.target, tr = input.closest("tr");
    if (!tr || !input.name) return;
    patch(tr, input.type === "checkbox" ? { excluded: input.checked } : { [input.name]: input.value });
  });

  if (!sendButton) return;
  sendButton.addEventListener("click", () => {
    const n = Number(sendButton.dataset.toSend);
    $("#confirm-text").textContent = `Send ${plural(n, "call")} to ${host}? Ending a call cannot be undone.`;
    confirmBox.hidden = false;
    sendButton.hidden = true;
    $("#confirm-send").focus();
  });
  $("#confirm-cancel").addEventListener("click", () => {
    confirmBox.hidden = true;
    sendButton.hidden = false;
    sendButton.focus();  // back where the person was, not lost on the page's body
  });
  $("#confirm-send").addEventListener("click", async () => {
    $("#confirm-send").disabled = true;
    sendError.textContent = "";
    const { ok, data } = await api("POST", `/api/files/${encodeURIComponent(id)}/run`);
    if (ok) { window.location.assign(`/runs/${encodeURIComponent(data.run)}`); return; }
    sendError.textContent = data.error;
    $("#confirm-send").disabled = false;
    confirmBox.hidden = true;
    sendButton.hidden = false;
  });
}

// -- 2b. the header row and the columns, when the loader found none -------------------------------
function setUpColumns(main) {
  const id = main.dataset.columns, form = $("#columns");
  if (!form) return;
  function fill(tr) {
    const cells = [...tr.querySelectorAll("td")].slice(1).map((td) => td.textContent).filter((text) => text);
    for (const select of form.querySelectorAll("select[data-field]")) {
      const before = select.value;
      select.replaceChildren(new Option("(none)", ""), ...cells.map((text) => new Option(text, text)));
      select.value = cells.includes(before) ? before : "";
    }
  }
  form.addEventListener("change", (event) => {
    if (event.target.name === "header_row") fill(event.target.closest("tr"));
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const columns = {};
    for (const select of form.querySelectorAll("select[data-field]")) {
      if (select.value) columns[select.dataset.field] = select.value;
    }
    const noNotes = form.elements.no_notes.checked;
    const { ok, data } = await api("POST", `/api/files/${encodeURIComponent(id)}/columns`, { columns, no_notes: noNotes });
    if (ok) { window.location.assign(`/files/${encodeURIComponent(id)}`); return; }
    $("#columns-sentence").textContent = "";  // the sentence of the first check no longer holds: one answer, the new one
    $("#columns-error").textContent = data.error;
  });
}

// -- 4/5. progress, stop, done -----------------------------------------------------------------
// The file's (or the run's) warnings, as the server says them now (a fix in the page can add one).
function showWarnings(box, warnings) {
  if (!box || !warnings) return;
  box.replaceChildren(...warnings.map((text) => {
    const p = document.createElement("p");
    p.className = "warning";
    p.setAttribute("role", "note");
    p.textContent = text;
    return p;
  }));
}

function setUpRun(main) {
  const id = main.dataset.run, bar = $("#bar");
  function show(view) {
    const texts = view.texts;
    $("#state").textContent = texts.state;
    $("#state").dataset.state = view.state;
    main.dataset.state = view.state;
    $("#progress-text").textContent = texts.progress;
    bar.max = Math.max(view.progress.to_send, 1);
    bar.value = view.progress.to_send ? view.progress.done : (view.state === "running" ? 0 : 1);
    for (const [name, value] of Object.entries(view.counts)) {
      const cell = $(`[data-count="${name}"]`);
      if (cell) cell.textContent = String(value);
    }
    if (view.state === "running") return;
    $("#run-verb").textContent = "Run of";
    if (document.activeElement === $("#stop")) $("#download").focus();  // Stop is gone: focus stays in reach
    $("#stop").hidden = true;
    $("#stop-help").hidden = true;
    $("#done").hidden = false;
    $("#summary").textContent = texts.summary;
    $("#error").textContent = view.error || "";
    showWarnings($("#warnings"), view.warnings);
    $("#download").hidden = !view.workbook;
    $("#again").hidden = !view.again;
    $("#again-help").hidden = $("#again").hidden;
    $("#problems").hidden = $("#problems-heading").hidden = !view.problems.length;
    $("#unknown-help").hidden = !view.counts.unknown;
    const body = $("#problems tbody");
    body.replaceChildren();
    for (const problem of view.problems) {
      const tr = document.createElement("tr");
      for (const key of ["row", "call", "status", "message"]) {
        const td = document.createElement("td");
        if (key === "status") {
          const badge = document.createElement("span");
          badge.className = "status";
          badge.dataset.status = problem.status;
          badge.textContent = problem.status;
          td.append(badge);
        } else if (key === "call" && problem.status === "unknown") {  // settled from its lookup
          const link = document.createElement("a");
          link.href = `/history?call=${encodeURIComponent(problem.call)}`;
          link.textContent = problem.call;
          td.append(link);
        } else td.textContent = String(problem[key]);
        tr.append(td);
      }
      body.append(tr);
    }
  }
  if (main.dataset.state === "running") {
    const events = new EventSource(`/api/runs/${encodeURIComponent(id)}/events`);
    events.onmessage = (event) => show(JSON.parse(event.data));
    events.addEventListener("end", (event) => { show(JSON.parse(event.data)); events.close(); });
  }
  $("#stop").addEventListener("click", async () => {
    $("#stop").disabled = true;
    const { ok, data } = await api("POST", `/api/runs/${encodeURIComponent(id)}/stop`);
    if (ok) show(data);
  });
  $("#again").addEventListener("click", async () => {
    const { ok, data } = await api("POST", `/api/runs/${encodeURIComponent(id)}/again`);
    if (ok) { window.location.assign(`/files/${encodeURIComponent(data.id)}`); return; }
    $("#again-error").textContent = data.error;
  });
}

// History: record what a person saw in Ryng about a call left unknown.
function setUpResolve(box) {
  for (const button of box.querySelectorAll("button[data-as]")) {
    button.addEventListener("click", async () => {
      for (const other of box.querySelectorAll("button")) other.disabled = true;
      const url = `/api/calls/${encodeURIComponent(box.dataset.call)}/resolve`;
      const { ok, data } = await api("POST", url, { as: button.dataset.as, note: $("#resolve-note").value });
      if (ok) { window.location.reload(); return; }
      $("#resolve-error").textContent = data.error;
      for (const other of box.querySelectorAll("button")) other.disabled = false;
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = $("#upload"), main = $("main");
  if (form) setUpUpload(form);
  if (main && main.dataset.upload) setUpCheck(main);
  if (main && main.dataset.run) setUpRun(main);
  if (main && main.dataset.columns) setUpColumns(main);
  const resolve = $(".resolve");
  if (resolve) setUpResolve(resolve);
});
