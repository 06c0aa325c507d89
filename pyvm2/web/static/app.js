// pyvm2's page: the process table, actions, a log pane and charts, kept live by /api/events.
// Every name and log line goes into the page as text (textContent), never as HTML.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const remote = document.querySelector('meta[name="pyvm2-remote"]').content;
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#apps tbody");
  const MAX_LOG_LINES = 2000;
  const HOUR_S = 3600;

  const apps = new Map();        // pm_id -> jlist entry
  const reasons = new Map();     // pm_id -> [{t, reason, restart_time}]
  let selected = null;           // pm_id whose details and logs are shown
  let history = null;            // {t: [], cpu: [], memory: []} of the selected app
  let source = null;
  let daemonUp = true;
  let renderQueued = false;
  let refetchTimer = null;

  // ---- helpers ---------------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function uptime(ms) {
    if (!ms) return "0";
    let s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m";
    const h = Math.floor(m / 60);
    if (h < 24) return h + "h";
    return Math.floor(h / 24) + "D";
  }

  function bytes(n) {
    n = Number(n) || 0;
    if (n < 1024) return n + "b";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + "kb";
    if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + "mb";
    return (n / 1024 / 1024 / 1024).toFixed(2) + "gb";
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString();
  }

  function toast(message) {
    const t = $("toast");
    t.textContent = message;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (opts.method === "POST") opts.headers["X-CSRF-Token"] = csrf;
    const res = await fetch(path, opts);
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const err = body && body.error ? body.error : { message: res.status + " " + res.statusText };
      if (res.status === 401) { window.location.reload(); }
      throw new Error(err.message + (err.hint ? " (" + err.hint + ")" : ""));
    }
    return body;
  }

  function enc(x) { return encodeURIComponent(String(x)); }

  // ---- the table -------------------------------------------------------------------------
  function schedule() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  function actionButton(label, action, app, title) {
    const b = el("button", label, "act act-" + action);
    b.type = "button";
    b.title = title;
    b.dataset.action = action;
    b.dataset.id = app.pm_id;
    return b;
  }

  const pending = new Set();      // pm_ids with an action in flight
  const rows = new Map();         // pm_id -> <tr>, updated in place so clicks are never lost

  function cells(app) {
    const env = app.pm2_env || {};
    const monit = app.monit || {};
    const status = env.status || "unknown";
    const online = status === "online";
    return [
      [app.pm_id, "id"], [app.name, "name"], [env.namespace, "opt"],
      [env.exec_mode === "cluster_mode" ? "cluster" : "fork", "opt"],
      [online ? app.pid : 0, "opt"], [online ? uptime(env.pm_uptime) : 0, "uptime"],
      [env.restart_time, "restarts"], [status, "status status-" + status.replace(/\s+/g, "-")],
      [(monit.cpu || 0) + "%", "cpu"], [bytes(monit.memory), "mem"],
      [env.username, "opt"], [env.watching ? "✔" : "✘", "opt"],
    ];
  }

  function actionCell(app, td) {
    const status = (app.pm2_env || {}).status;
    const running = status === "online" || status === "launching" || status === "waiting restart";
    const key = running ? "running" : "stopped";
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    const box = el("div", null, "btns");
    box.append(
      actionButton("↺", "restart", app, "restart"),
      running ? actionButton("■", "stop", app, "stop") : actionButton("▶", "start", app, "start"),
      actionButton("✕", "delete", app, "delete"));
    td.replaceChildren(box);
  }

  function row(app) {
    let tr = rows.get(app.pm_id);
    const values = cells(app);
    if (!tr) {
      tr = el("tr");
      tr.dataset.id = app.pm_id;
      for (let i = 0; i < values.length; i++) tr.appendChild(el("td"));
      tr.appendChild(el("td", null, "actions"));
      tr.children[1].title = "show details and logs";
      rows.set(app.pm_id, tr);
    }
    const env = app.pm2_env || {};
    tr.dataset.status = env.status || "unknown";
    tr.classList.toggle("selected", app.pm_id === selected);
    values.forEach(([text, cls], i) => {
      const td = tr.children[i];
      const t = text === undefined || text === null ? "" : String(text);
      if (td.textContent !== t) td.textContent = t;
      if (td.className !== cls) td.className = cls;
    });
    tr.children[7].title = env.status_reason && env.status !== "online" ? env.status_reason : "";
    actionCell(app, tr.children[values.length]);
    for (const b of tr.querySelectorAll("button")) b.disabled = pending.has(app.pm_id);
    return tr;
  }

  function render() {
    const list = Array.from(apps.values()).sort((a, b) => a.pm_id - b.pm_id);
    for (const [id, tr] of rows) {
      if (!apps.has(id)) { tr.remove(); rows.delete(id); }
    }
    let prev = null;
    for (const app of list) {
      const tr = row(app);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    $("empty").hidden = list.length > 0;
    renderDetail();
  }

  function setApps(list) {
    apps.clear();
    for (const a of list) apps.set(a.pm_id, a);
    if (selected !== null && !apps.has(selected)) select(null);
    schedule();
  }

  function refetchSoon(delay) {
    if (refetchTimer) return;
    refetchTimer = setTimeout(async () => {
      refetchTimer = null;
      try { setApps(await api("/api/apps")); } catch (e) { /* the banner says why */ }
    }, delay === undefined ? 200 : delay);
  }

  // ---- details, charts and logs ------------------------------------------------------------
  function renderDetail() {
    const panel = $("detail");
    const app = selected === null ? null : apps.get(selected);
    if (!app) { panel.hidden = true; return; }
    panel.hidden = false;
    const env = app.pm2_env || {};
    $("detail-title").textContent = app.name + " (id " + app.pm_id + ")";
    const info = [
      ["status", env.status], ["status reason", env.status_reason || "—"],
      ["last restart reason", env.last_restart_reason || "—"],
      ["restarts", env.restart_time], ["unstable restarts", env.unstable_restarts],
      ["last exit code", env.exit_code === null || env.exit_code === undefined ? "—" : env.exit_code],
      ["script", env.pm_exec_path], ["cwd", env.pm_cwd],
      ["interpreter", env.exec_interpreter],
      ["out log", env.pm_out_log_path], ["error log", env.pm_err_log_path],
    ];
    const frag = document.createDocumentFragment();
    for (const [k, v] of info) { frag.appendChild(el("dt", k)); frag.appendChild(el("dd", v)); }
    $("detail-info").replaceChildren(frag);
    const list = reasons.get(app.pm_id) || [];
    const ul = document.createDocumentFragment();
    if (!list.length) ul.appendChild(el("li", "none seen since this page opened", "muted"));
    for (const r of list.slice().reverse()) {
      const li = el("li");
      li.appendChild(el("time", clock(r.t)));
      li.appendChild(el("span", " ↺" + r.restart_time + " "));
      li.appendChild(el("span", r.reason || "(no reason given)", "reason"));
      ul.appendChild(li);
    }
    $("reasons").replaceChildren(ul);
    drawCharts();
  }

  function drawChart(canvas, times, values, format) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300;
    const h = canvas.clientHeight || 140;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const now = Date.now() / 1000;
    // the last hour, or less while there is less: never narrower than five minutes
    const span = Math.min(HOUR_S, Math.max(300, times.length ? now - times[0] : 0));
    let top = 1;
    for (const v of values) if (v > top) top = v;
    top *= 1.1;
    const pad = { l: 4, r: 4, t: 16, b: 14 };
    const x = (t) => pad.l + (w - pad.l - pad.r) * (1 - (now - t) / span);
    const y = (v) => h - pad.b - (h - pad.t - pad.b) * (v / top);
    ctx.strokeStyle = "#d0d4da";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const gy = pad.t + (h - pad.t - pad.b) * i / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, gy); ctx.lineTo(w - pad.r, gy); ctx.stroke();
    }
    ctx.fillStyle = "#5b6470";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("max " + format(top / 1.1), pad.l + 2, 11);
    ctx.fillText("-" + Math.round(span / 60) + " min", pad.l + 2, h - 2);
    ctx.fillText("now", w - pad.r - 22, h - 2);
    if (!times.length) return;
    ctx.strokeStyle = "#1f7ae0";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    for (let i = 0; i < times.length; i++) {
      if (now - times[i] > span) continue;
      const px = x(times[i]), py = y(values[i]);
      if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
    }
    ctx.stroke();
  }

  function drawCharts() {
    if (!history) return;
    drawChart($("chart-cpu"), history.t, history.cpu, (v) => v.toFixed(1) + "%");
    drawChart($("chart-mem"), history.t, history.memory, bytes);
    const n = history.t.length;
    $("cpu-now").textContent = n ? "(now " + history.cpu[n - 1] + "%)" : "";
    $("mem-now").textContent = n ? "(now " + bytes(history.memory[n - 1]) + ")" : "";
  }

  function logLine(stream, text) {
    const pane = $("log");
    const line = el("div", text, "line " + stream);
    line.dataset.stream = stream;
    pane.appendChild(line);
    while (pane.childElementCount > MAX_LOG_LINES) pane.firstElementChild.remove();
  }

  function scrollLog() {
    if ($("follow").checked) { const pane = $("log"); pane.scrollTop = pane.scrollHeight; }
  }

  function applyLogFilter() {
    const pane = $("log");
    pane.classList.toggle("hide-out", !$("show-out").checked);
    pane.classList.toggle("hide-err", !$("show-err").checked);
  }

  async function select(pmId) {
    selected = pmId;
    history = null;
    $("log").replaceChildren();
    connect();
    schedule();
    if (pmId === null) return;
    try {
      const [tail, hist] = await Promise.all([
        api("/api/apps/" + enc(pmId) + "/logs?lines=200"),
        api("/api/apps/" + enc(pmId) + "/history"),
      ]);
      if (selected !== pmId) return;
      const entry = (tail.apps || [])[0];
      if (entry) {
        for (const l of entry.out) logLine("out", l);
        for (const l of entry.err) logLine("err", l);
        scrollLog();
      }
      const h = (hist.apps || {})[String(pmId)];
      if (h) {
        history = history && history.t.length ? merge(h, history) : h;
        drawCharts();
      }
    } catch (e) { toast(e.message); }
  }

  function merge(older, newer) {
    const last = older.t.length ? older.t[older.t.length - 1] : 0;
    for (let i = 0; i < newer.t.length; i++) {
      if (newer.t[i] > last) {
        older.t.push(newer.t[i]); older.cpu.push(newer.cpu[i]); older.memory.push(newer.memory[i]);
      }
    }
    return older;
  }

  // ---- events ----------------------------------------------------------------------------
  function setDaemon(up) {
    daemonUp = up;
    $("banner-daemon").hidden = up;
    document.body.classList.toggle("daemon-down", !up);
    $("conn").textContent = up ? "live" : "daemon down";
    $("conn").className = "conn " + (up ? "live" : "down");
  }

  function connect() {
    if (source) source.close();
    const url = "/api/events" + (selected === null ? "" : "?logs=" + enc(selected));
    source = new EventSource(url);
    const on = (name, fn) => source.addEventListener(name, (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      fn(data);
    });
    source.onopen = () => { if (daemonUp) setDaemon(true); };
    source.onerror = () => {
      $("conn").textContent = "reconnecting…";
      $("conn").className = "conn down";
      if (source.readyState === EventSource.CLOSED) {
        // refused rather than dropped: a new token ends the session (api() then reloads)
        setTimeout(() => { api("/api/session").then(connect, () => setTimeout(connect, 2000)); }, 1000);
      }
    };
    on("daemon", (d) => {
      setDaemon(Boolean(d.up));
      if (d.up) refetchSoon(0);  // on connect, and when the daemon is back
    });
    on("state", (ev) => {
      const app = ev.app;
      if (!app) return;
      apps.set(app.pm_id, app);
      schedule();
    });
    on("restart", (ev) => {
      const list = reasons.get(ev.pm_id) || [];
      list.push({ t: ev.t, reason: ev.reason, restart_time: ev.restart_time });
      if (list.length > 10) list.shift();
      reasons.set(ev.pm_id, list);
      schedule();
    });
    on("samples", (ev) => {
      const ids = Object.keys(ev.apps || {});
      let changed = ids.length !== apps.size;
      for (const id of ids) {
        const app = apps.get(Number(id));
        if (!app) { changed = true; continue; }
        const [cpu, mem] = ev.apps[id];
        app.monit = { cpu: cpu, memory: mem };
        if (history && Number(id) === selected) {
          history.t.push(ev.t); history.cpu.push(cpu); history.memory.push(mem);
          while (history.t.length && ev.t - history.t[0] > HOUR_S) {
            history.t.shift(); history.cpu.shift(); history.memory.shift();
          }
        }
      }
      if (changed) refetchSoon();
      schedule();
    });
    on("log", (ev) => {
      if (ev.pm_id !== selected) return;
      for (const l of ev.lines || []) logLine(ev.stream === "err" ? "err" : "out", l);
      scrollLog();
    });
    on("dropped", (ev) => toast(ev.count + " events were dropped (this page read too slowly)"));
  }

  // ---- actions ---------------------------------------------------------------------------
  function confirmAction(text) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-yes").onclick = null; $("confirm-no").onclick = null; dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      $("confirm-yes").onclick = () => done(true);
      $("confirm-no").onclick = () => done(false);
      dialog.onclose = () => done(false);
      dialog.showModal();
    });
  }

  async function act(target, action) {
    try {
      const res = await api("/api/apps/" + enc(target) + "/" + enc(action), { method: "POST" });
      if (action === "delete") {
        for (const id of res.ids || []) apps.delete(id);
        if (selected !== null && !apps.has(selected)) select(null);
      }
      for (const a of res.apps || []) apps.set(a.pm_id, a);
      schedule();
    } catch (e) { toast(action + " failed: " + e.message); }
  }

  tbody.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) {
      const id = Number(button.dataset.id);
      const app = apps.get(id);
      const action = button.dataset.action;
      if (action === "delete" &&
          !(await confirmAction("Delete " + (app ? app.name : id) + " (id " + id + ")? It is stopped and removed from the list."))) return;
      pending.add(id);
      schedule();
      try { await act(id, action); } finally { pending.delete(id); schedule(); }
      return;
    }
    const tr = ev.target.closest("tr[data-id]");
    if (tr) select(Number(tr.dataset.id));
  });

  document.querySelector(".all-actions").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-all]");
    if (!button) return;
    const action = button.dataset.all;
    const n = Array.from(apps.values()).filter((a) => a.name !== "pyvm2-web").length;
    if (!(await confirmAction(action[0].toUpperCase() + action.slice(1) + " all " + n +
        " app(s)? (this page's own server is left alone)"))) return;
    await act("all", action);
  });

  $("detail-close").addEventListener("click", () => select(null));
  $("detail-reset").addEventListener("click", () => { if (selected !== null) act(selected, "reset"); });
  $("log-clear").addEventListener("click", () => $("log").replaceChildren());
  $("show-out").addEventListener("change", applyLogFilter);
  $("show-err").addEventListener("change", applyLogFilter);
  window.addEventListener("resize", drawCharts);
  setInterval(schedule, 1000);  // uptimes move on

  $("banner-remote").hidden = remote !== "plain";
  connect();
})();
