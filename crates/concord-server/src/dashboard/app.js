// Concord dashboard: a small single-page app over the admin API (/api/v1). Plain JavaScript,
// no build step, no dependencies; served by the concord binary itself (dashboard.rs).
//
// - Authentication: the HttpOnly session cookie set by POST /api/v1/session; any 401 shows the
//   login form. The token is never stored by this page.
// - Every value from the API is inserted as text (textContent / attributes), never as HTML.
// - Live: the current view is re-rendered every 3 s (toggle in the footer, key `l`); a refresh
//   keeps the focused control focused and is skipped while you type in a field.
// - Keyboard: see the help dialog (`?`) — `/` search, `g o|d|a|r|s|c` go to a page, `j`/`k` rows,
//   `x` select, `R` replay selected, `.` refresh.
"use strict";

(() => {
  const REFRESH_MS = 3000;
  const $ = (sel, root = document) => root.querySelector(sel);
  const view = $("#view");
  let me = null; // {name, role}
  let live = true;
  let timer = null;
  let rendering = false;
  let gPending = false;
  const selected = new Set(); // dead-letter ids selected for a bulk replay
  const replayWatch = new Map(); // dead-letter id -> {at, key, endpoint, kind, status}
  // Reconciliation run id -> its checks ({flow, dest, check, drifted, healed, error}): a stored
  // run never changes, so each run's report is read once for the Drift list.
  const runChecks = new Map();
  let reconciling = false; // a "Run now" from this page is under way
  // The run on screen: a stored run never changes, so a live refresh of its page does not read
  // its (possibly large) report again. Dropped when the list is shown.
  let shownRun = null;

  // ---------- DOM helpers ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const svgNS = "http://www.w3.org/2000/svg";
  function sparkline(values, width = 120, height = 24) {
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const vals = (values && values.length ? values : [0]).map(Number);
    const max = Math.max(1, ...vals);
    const step = vals.length > 1 ? width / (vals.length - 1) : width;
    const pts = vals.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    const area = document.createElementNS(svgNS, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", `0,${height} ${pts.join(" ")} ${width},${height}`);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(area, line);
    const total = vals.reduce((a, b) => a + b, 0);
    const title = document.createElementNS(svgNS, "title");
    title.textContent = `${total} deliveries in the last ${vals.length} minutes; latest minute ${vals[vals.length - 1]}`;
    svg.append(title);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title.textContent);
    return svg;
  }
  const status = (cls, text) => h("span", { class: `status ${cls}` }, text);
  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
  const fmtAgo = (ms) => {
    if (!ms) return "—";
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${s.toFixed(0)} s ago`;
    if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  };
  const fmtMs = (ms) => {
    if (!ms) return "0 s";
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${(ms / 60000).toFixed(1)} min`;
  };
  const enc = encodeURIComponent;
  const link = (href, text, attrs = {}) => h("a", { href, ...attrs }, text);
  const orderHref = (key) => `#/orders/${enc(key)}`;
  const isOperator = () => me && me.role === "operator";

  function flash(text, error = false) {
    const box = $("#flash");
    const m = h("div", { class: error ? "msg error" : "msg" }, text);
    box.append(m);
    setTimeout(() => m.remove(), 5000);
  }

  // ---------- API ----------
  class AuthError extends Error {}
  async function api(path, opts = {}) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" }, method: opts.method || "GET" };
    if (opts.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    const r = await fetch(`/api/v1${path}`, init);
    if (r.status === 401 && !opts.login) throw new AuthError("not logged in");
    let body = null;
    if (r.status !== 204) body = await r.json().catch(() => null);
    if (!r.ok) {
      const e = new Error((body && body.error) || `HTTP ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return body;
  }

  // ---------- routing ----------
  // `#/page/arg?query`: arguments are URI-encoded, so an order key's `/` stays in one part.
  function route() {
    const path = location.hash.replace(/^#\/?/, "").split("?")[0];
    const parts = path.split("/").map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    return { parts };
  }
  const pages = {
    "": overview,
    flows: flowPage,
    "dead-letters": deadLetters,
    alerts: alertsPage,
    orders: ordersPage,
    stock: stockPage,
    drift: driftPage,
    login: loginPage,
  };

  async function render(refresh = false) {
    if (rendering) return;
    const { parts } = route();
    const page = pages[parts[0]] || notFound;
    for (const a of document.querySelectorAll("[data-nav]")) {
      const on = (a.dataset.nav === "overview" && parts[0] === "") || a.dataset.nav === parts[0];
      a.classList.toggle("active", on);
      if (on) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (page !== loginPage && !me) {
      try {
        me = await api("/me");
        showWho();
      } catch (e) {
        return showLogin(e);
      }
    }
    const active = document.activeElement;
    const focusKey = active && view.contains(active) ? active.dataset.focus : null;
    if (refresh && active && view.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return;
    // Expanded payloads stay expanded across a refresh.
    const expanded = refresh ? [...view.querySelectorAll("details[open] > summary[data-focus]")].map((x) => x.dataset.focus) : [];
    rendering = true;
    try {
      const node = await page(parts.slice(1));
      view.replaceChildren(node);
      for (const key of expanded) {
        const summary = view.querySelector(`summary[data-focus="${CSS.escape(key)}"]`);
        if (summary) summary.parentElement.open = true;
      }
      if (focusKey) {
        const again = view.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
        if (again) again.focus();
      } else if (!refresh) {
        view.focus();
      }
      $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (e instanceof AuthError) return showLogin(e);
      if (!refresh) view.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load this page: ${e.message}`));
      else $("#updated").textContent = `refresh failed: ${e.message}`;
    } finally {
      rendering = false;
    }
  }

  function showLogin() {
    me = null;
    showWho();
    if (route().parts[0] !== "login") {
      sessionStorage.setItem("concord.after-login", location.hash || "#/");
      location.hash = "#/login";
    } else {
      render();
    }
  }

  function showWho() {
    $("#who").textContent = me ? `${me.name} (${me.role})` : "";
    $("#logout").hidden = !me;
  }

  // ---------- pages ----------
  async function loginPage() {
    const err = h("p", { class: "error", role: "alert", id: "login-error" });
    const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "login-error" });
    const form = h(
      "form",
      { class: "card login", id: "login-form" },
      h("h1", {}, "Log in"),
      h("p", { class: "muted" }, "Paste an admin token (viewer or operator). It is exchanged for a session cookie and not kept by this page."),
      h("label", { for: "token" }, "Token"),
      input,
      h("button", { type: "submit", class: "primary", id: "login-submit" }, "Log in"),
      err,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      try {
        me = await api("/session", { method: "POST", body: { token: input.value.trim() }, login: true });
        showWho();
        const next = sessionStorage.getItem("concord.after-login") || "#/";
        sessionStorage.removeItem("concord.after-login");
        location.hash = next === "#/login" ? "#/" : next;
      } catch (e) {
        err.textContent = e.status === 401 ? "Unknown token." : `Login failed: ${e.message}`;
        input.focus();
      }
    });
    setTimeout(() => input.focus(), 0);
    return form;
  }

  /// Status of a flow: red when a destination's breaker is open, its last run failed or it has
  /// open dead letters; amber when paused, lagging (> 30 s) or parked items wait; green otherwise.
  function flowStatus(f, endpoints, dead = 0) {
    const broken = f.to.filter((d) => {
      const e = endpoints.find((x) => x.name === d);
      return e && e.health && e.health.breaker !== "closed";
    });
    if (broken.length) return ["bad", `breaker open at ${broken.join(", ")}`];
    if (f.last_run && f.last_run.error) return ["bad", "last run failed"];
    if (dead > 0) return ["bad", `${dead} dead letter${dead > 1 ? "s" : ""}`];
    if (f.paused) return ["idle", "paused"];
    if (f.lag_ms > 30000) return ["warn", `behind by ${fmtMs(f.lag_ms)}`];
    if (f.queue_parked > 0) return ["warn", `${f.queue_parked} parked`];
    return ["ok", "current"];
  }

  function alertsTable(alerts, empty) {
    if (!alerts.length) return h("p", { class: "muted" }, empty);
    return h(
      "table",
      { id: "alerts-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Rule"), h("th", {}, "Subject"), h("th", {}, "Summary"), h("th", {}, "Since"), h("th", {}, "Resolved"))),
      h(
        "tbody",
        {},
        alerts.map((a) =>
          h(
            "tr",
            { tabindex: 0, "data-focus": `alert-${a.id}` },
            h("td", {}, a.state === "firing" ? status("bad", "firing") : status("ok", "resolved")),
            h("td", {}, a.rule, a.condition ? h("div", { class: "muted" }, a.condition) : null),
            h("td", {}, a.subject || "hub"),
            h("td", {}, a.summary),
            h("td", {}, fmtTime(a.since)),
            h("td", {}, a.resolved_at ? fmtTime(a.resolved_at) : "—"),
          ),
        ),
      ),
    );
  }

  async function overview() {
    const [flows, endpoints, alerts, letters] = await Promise.all([
      api("/flows"),
      api("/endpoints"),
      api("/alerts?limit=50").catch((e) => (e.status === 404 ? [] : Promise.reject(e))),
      api("/dead-letters?limit=1000"),
    ]);
    const deadByFlow = {};
    for (const d of letters) if (d.flow) deadByFlow[d.flow] = (deadByFlow[d.flow] || 0) + 1;
    const firing = alerts.filter((a) => a.state === "firing");
    const flowRows = flows.map((f) => {
      const [cls, text] = flowStatus(f, endpoints, deadByFlow[f.name] || 0);
      return h(
        "tr",
        { tabindex: 0, "data-href": `#/flows/${enc(f.name)}`, "data-focus": `flow-${f.name}`, "data-flow": f.name },
        h("td", {}, status(cls, text)),
        h("td", {}, link(`#/flows/${enc(f.name)}`, f.name, { tabindex: -1 })),
        h("td", {}, f.kind),
        h("td", {}, `${f.mode}`, f.schedule ? h("div", { class: "muted" }, f.schedule) : null),
        h("td", {}, `${f.from.join(", ")} → ${f.to.join(", ")}`),
        h("td", { class: "num" }, fmtMs(f.lag_ms)),
        h("td", {}, sparkline(f.events_per_minute)),
        h("td", { class: "num" }, f.throughput_per_minute),
        h("td", { class: "num" }, f.queue_pending),
        h("td", { class: "num" }, f.queue_parked),
      );
    });
    const epRows = endpoints.map((e) => {
      const hl = e.health;
      const q = e.queue || {};
      const breaker = hl ? hl.breaker : "—";
      const depth = (q.pending || 0) + (q.inflight || 0);
      return h(
        "tr",
        { tabindex: 0, "data-focus": `ep-${e.name}`, "data-endpoint": e.name },
        h("td", {}, e.name, h("div", { class: "muted" }, e.connector)),
        h("td", {}, hl ? status(breaker === "closed" ? "ok" : breaker === "half_open" ? "warn" : "bad", `breaker ${breaker.replace("_", "-")}`) : status("idle", "source only")),
        h("td", { class: "num" }, depth, " ", depth ? h("span", { class: "bar", "data-w": Math.min(100, depth) }) : null),
        h("td", { class: "num" }, q.parked || 0),
        h("td", { class: "num" }, q.dead || 0),
        h("td", {}, hl && hl.last_success ? fmtAgo(hl.last_success) : "—"),
        h("td", { class: "num" }, hl ? hl.rate_limited : "—"),
        h("td", { class: "reason" }, (hl && hl.last_error) || ""),
      );
    });
    const root = h(
      "div",
      {},
      h("h1", {}, "Overview"),
      h("section", { "aria-labelledby": "h-alerts" }, h("h2", { id: "h-alerts" }, `Active alerts (${firing.length})`), alertsTable(firing, "No alert is firing.")),
      h(
        "section",
        { "aria-labelledby": "h-flows" },
        h("h2", { id: "h-flows" }, `Flows (${flows.length})`),
        h(
          "table",
          { id: "flows-table", class: "rows" },
          h("thead", {}, h("tr", {}, ["Status", "Flow", "Kind", "Mode", "Route", "Lag", "Events / min (30 min)", "Last min", "Queued", "Parked"].map((t, i) => h("th", { class: i >= 5 && i !== 6 ? "num" : null }, t)))),
          h("tbody", {}, flowRows),
        ),
      ),
      h(
        "section",
        { "aria-labelledby": "h-eps" },
        h("h2", { id: "h-eps" }, "Endpoints"),
        h(
          "table",
          { id: "endpoints-table", class: "rows" },
          h("thead", {}, h("tr", {}, ["Endpoint", "Health", "Queue depth", "Parked", "Dead", "Last success", "429s", "Last error"].map((t, i) => h("th", { class: [2, 3, 4, 6].includes(i) ? "num" : null }, t)))),
          h("tbody", {}, epRows),
        ),
      ),
    );
    for (const b of root.querySelectorAll(".bar")) b.style.width = `${b.dataset.w}px`;
    return root;
  }

  async function flowPage([name]) {
    if (!name) {
      location.hash = "#/";
      return h("p", {}, "");
    }
    const [f, endpoints, letters] = await Promise.all([
      api(`/flows/${enc(name)}`),
      api("/endpoints"),
      api("/dead-letters?limit=1000"),
    ]);
    const mine = letters.filter((d) => d.flow === name);
    const [cls, text] = flowStatus(f, endpoints, mine.length);
    const act = async (what) => {
      try {
        await api(`/flows/${enc(name)}/${what}`, { method: "POST" });
        flash(`${what === "run" ? "Run requested" : what === "pause" ? "Paused" : "Resumed"}: ${name}`);
        render(true);
      } catch (e) {
        flash(`${what} failed: ${e.message}`, true);
      }
    };
    const op = isOperator();
    return h(
      "div",
      {},
      h("h1", {}, `Flow ${f.name} `, status(cls, text)),
      h(
        "div",
        { class: "toolbar" },
        f.paused
          ? h("button", { id: "flow-resume", "data-focus": "flow-resume", disabled: !op, title: op ? null : "needs role operator", onclick: () => act("resume") }, "Resume")
          : h("button", { id: "flow-pause", "data-focus": "flow-pause", disabled: !op, title: op ? null : "needs role operator", onclick: () => act("pause") }, "Pause"),
        f.mode === "batch" ? h("button", { id: "flow-run", "data-focus": "flow-run", disabled: !op, onclick: () => act("run") }, "Run now") : null,
      ),
      h(
        "div",
        { class: "grid" },
        h(
          "div",
          { class: "card" },
          h(
            "dl",
            { class: "kv" },
            h("dt", {}, "Kind"), h("dd", {}, f.kind),
            h("dt", {}, "Pattern"), h("dd", {}, f.pattern),
            h("dt", {}, "Mode"), h("dd", {}, f.mode, f.schedule ? ` (${f.schedule})` : "", f.poll_interval_ms ? ` — polls every ${fmtMs(f.poll_interval_ms)}` : ""),
            h("dt", {}, "From"), h("dd", {}, f.from.join(", ")),
            h("dt", {}, "To"), h("dd", {}, f.to.join(", ")),
            h("dt", {}, "Last run"), h("dd", {}, f.last_run ? `${fmtTime(f.last_run.started_at)} (${f.last_run.trigger}), stored ${f.last_run.stored}${f.last_run.error ? ` — error: ${f.last_run.error}` : ""}` : "—"),
            h("dt", {}, "Next run"), h("dd", {}, f.next_run ? fmtTime(f.next_run) : "—"),
          ),
        ),
        h(
          "div",
          { class: "card" },
          h(
            "dl",
            { class: "kv" },
            h("dt", {}, "Delivered"), h("dd", {}, `${f.delivered} since start, ${f.throughput_per_minute} in the last minute`),
            h("dt", {}, "Lag"), h("dd", {}, `${fmtMs(f.lag_ms)} (oldest waiting); last delivery ${fmtMs(f.last_delivery_lag_ms)}`),
            h("dt", {}, "Queued"), h("dd", {}, `${f.queue_pending} waiting, ${f.queue_parked} parked`),
          ),
          h("p", {}, "Deliveries per minute, last 30 minutes"),
          sparkline(f.events_per_minute, 360, 60),
        ),
      ),
      h("h2", {}, `Open dead letters of this flow (${mine.length})`),
      mine.length ? deadLetterTable(mine, false) : h("p", { class: "muted" }, "None."),
    );
  }

  function deadLetterTable(letters, selectable) {
    const op = isOperator();
    const replay = async (ids) => {
      try {
        const r = await api("/dead-letters/replay", { method: "POST", body: { ids } });
        for (const id of r.done) {
          const d = letters.find((x) => x.id === id);
          if (d) replayWatch.set(id, { at: Date.now(), key: d.key, endpoint: d.endpoint, kind: d.kind, status: "queued for delivery" });
          selected.delete(id);
        }
        flash(`Replayed ${r.done.length} of ${r.requested.length}${r.skipped.length ? ` (skipped ${r.skipped.join(", ")})` : ""}`);
        render(true);
      } catch (e) {
        flash(`Replay failed: ${e.message}`, true);
      }
    };
    const drop = async (id) => {
      if (!confirm(`Drop dead letter #${id}? It stays in the audit trail.`)) return;
      try {
        await api("/dead-letters/drop", { method: "POST", body: { ids: [id] } });
        flash(`Dropped #${id}`);
        render(true);
      } catch (e) {
        flash(`Drop failed: ${e.message}`, true);
      }
    };
    const rows = letters.map((d) => {
      const keyCell = d.kind === "order" ? link(orderHref(d.key), d.key) : d.kind === "stock" ? link(`#/stock/${enc(d.key.split("@")[0])}`, d.key) : d.key;
      const details = h("details", {}, h("summary", { "data-focus": `dl-payload-${d.id}` }, "payload"), h("pre", {}, JSON.stringify(d.payload, null, 2)));
      return h(
        "tr",
        { tabindex: 0, "data-focus": `dl-${d.id}`, "data-dead-letter": d.id, "data-key": d.key },
        selectable
          ? h("td", {}, h("input", { type: "checkbox", "aria-label": `select #${d.id}`, "data-focus": `dl-sel-${d.id}`, checked: selected.has(d.id), onchange: (ev) => (ev.target.checked ? selected.add(d.id) : selected.delete(d.id)) }))
          : null,
        h("td", { class: "num" }, `#${d.id}`),
        h("td", {}, d.direction, h("div", { class: "muted" }, d.endpoint)),
        h("td", {}, d.kind, d.op ? h("div", { class: "muted" }, d.op) : null),
        h("td", {}, keyCell, d.flow ? h("div", { class: "muted" }, `flow ${d.flow}`) : null),
        h("td", { class: "reason" }, d.reason, details),
        h("td", { class: "num" }, d.attempts),
        h("td", {}, fmtAgo(d.created_at)),
        h(
          "td",
          {},
          h(
            "div",
            { class: "actions" },
            h("button", { class: "primary", "data-action": "replay", "data-focus": `dl-replay-${d.id}`, disabled: !op, title: op ? "Replay this dead letter" : "needs role operator", onclick: () => replay([d.id]) }, "Replay"),
            h("button", { class: "danger", "data-action": "drop", "data-focus": `dl-drop-${d.id}`, disabled: !op, title: op ? "Drop this dead letter" : "needs role operator", onclick: () => drop(d.id) }, "Drop"),
          ),
        ),
      );
    });
    const table = h(
      "table",
      { id: "dead-letters-table", class: "rows" },
      h("thead", {}, h("tr", {}, selectable ? h("th", {}, h("span", { class: "sr" }, "Select")) : null, ["Id", "Direction", "Kind", "Key", "Reason", "Attempts", "Created", "Actions"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows),
    );
    table.replaySelected = () => replay([...selected]);
    return table;
  }

  /// For replayed letters: follow the delivery (orders: the order's delivery attempts after the
  /// replay; other kinds: whether the key is dead-lettered again).
  async function followReplays(openLetters) {
    const out = [];
    for (const [id, w] of replayWatch) {
      if (w.status === "delivered" || w.status.startsWith("failed")) {
        out.push([id, w]);
        continue;
      }
      const again = openLetters.find((d) => d.key === w.key && d.endpoint === w.endpoint && d.id !== id);
      if (again) w.status = `failed again: dead letter #${again.id}`;
      else if (w.kind === "order") {
        try {
          const hist = await api(`/orders/${enc(w.key)}`);
          const ok = (hist.attempts || []).find((a) => a.dest === w.endpoint && a.outcome === "delivered" && a.at >= w.at - 5000);
          if (ok) w.status = "delivered";
        } catch (e) {
          if (e instanceof AuthError) throw e;
        }
      }
      out.push([id, w]);
    }
    return out;
  }

  async function deadLetters([id]) {
    if (id) return deadLetterPage(id);
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const state = params.get("state") || "open";
    const letters = await api(`/dead-letters?state=${enc(state)}&limit=500`);
    const follows = state === "open" ? await followReplays(letters) : [];
    const table = letters.length ? deadLetterTable(letters, state === "open") : null;
    const op = isOperator();
    return h(
      "div",
      {},
      h("h1", {}, "Dead letters"),
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "dl-state" }, "Show "),
        h(
          "select",
          { id: "dl-state", onchange: (ev) => (location.hash = `#/dead-letters?state=${ev.target.value}`) },
          ["open", "replayed", "dropped"].map((s) => h("option", { value: s, selected: s === state }, s)),
        ),
        state === "open" && letters.length
          ? h("button", { id: "replay-selected", class: "primary", disabled: !op, title: "Replay the selected dead letters (R)", onclick: () => table.replaySelected() }, "Replay selected")
          : null,
        op ? null : h("span", { class: "muted" }, "Replay and drop need the operator role."),
      ),
      follows.length
        ? h(
            "section",
            { "aria-labelledby": "h-replays" },
            h("h2", { id: "h-replays" }, "Replayed from this page"),
            h(
              "table",
              { id: "replays-table" },
              h("thead", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, "Key"), h("th", {}, "To"), h("th", {}, "Delivery"))),
              h(
                "tbody",
                {},
                follows.map(([rid, w]) =>
                  h(
                    "tr",
                    { "data-replayed": rid },
                    h("td", { class: "num" }, `#${rid}`),
                    h("td", {}, w.kind === "order" ? link(orderHref(w.key), w.key) : w.key),
                    h("td", {}, w.endpoint),
                    h("td", { class: "delivery" }, status(w.status === "delivered" ? "ok" : w.status.startsWith("failed") ? "bad" : "warn", w.status)),
                  ),
                ),
              ),
            ),
          )
        : null,
      table || h("p", { class: "muted", id: "no-dead-letters" }, `No ${state} dead letters.`),
    );
  }

  async function deadLetterPage(id) {
    const d = await api(`/dead-letters/${enc(id)}`);
    return h(
      "div",
      {},
      h("h1", {}, `Dead letter #${d.id}`),
      h("p", {}, link("#/dead-letters", "← all dead letters")),
      deadLetterTable([d], false),
    );
  }

  async function alertsPage() {
    const alerts = await api("/alerts?limit=200");
    return h(
      "div",
      {},
      h("h1", {}, "Alerts"),
      h("p", { class: "muted" }, "Rules are configured under [alerts] in concord.toml. Firing first, then recently resolved."),
      alertsTable(alerts, "No alerts yet."),
    );
  }

  async function ordersPage([key]) {
    if (key) return orderPage(key);
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const state = params.get("state") || "";
    const after = params.get("after") || "";
    const q = new URLSearchParams({ limit: "100" });
    if (state) q.set("state", state);
    if (after) q.set("after", after);
    const [page, counts] = await Promise.all([api(`/orders?${q}`), api("/orders/counts").catch(() => ({}))]);
    const orders = Array.isArray(page) ? page : page.orders || [];
    const next = Array.isArray(page) ? null : page.next_after;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    return h(
      "div",
      {},
      h("h1", {}, "Orders"),
      h(
        "nav",
        { class: "toolbar", "aria-label": "Orders by state", id: "order-counts" },
        link("#/orders", `all (${total})`, state ? {} : { "aria-current": "true" }),
        Object.entries(counts).map(([st, n]) => link(`#/orders?state=${enc(st)}`, `${st.replace(/_/g, " ")} (${n})`, st === state ? { "aria-current": "true" } : {})),
      ),
      h(
        "form",
        { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); const v = ev.target.elements.state.value.trim(); location.hash = v ? `#/orders?state=${enc(v)}` : "#/orders"; } },
        h("label", { for: "order-state" }, "State"),
        h("input", { id: "order-state", name: "state", value: state, placeholder: "placed, shipped, …" }),
        h("button", { type: "submit" }, "Filter"),
      ),
      orders.length
        ? h(
            "table",
            { id: "orders-table", class: "rows" },
            h("thead", {}, h("tr", {}, ["Order", "Channel", "State", "Accepted by ERP", "Updated"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              orders.map((o) =>
                h(
                  "tr",
                  { tabindex: 0, "data-href": orderHref(o.key), "data-focus": `order-${o.key}` },
                  h("td", {}, link(orderHref(o.key), o.key, { tabindex: -1 })),
                  h("td", {}, o.channel),
                  h("td", {}, o.state),
                  h("td", {}, fmtTime(o.accepted_at)),
                  h("td", {}, fmtAgo(o.updated_at)),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No orders."),
      next ? h("p", {}, link(`#/orders?${new URLSearchParams({ ...(state ? { state } : {}), after: next })}`, "Next page →")) : null,
    );
  }

  async function orderPage(key) {
    let o;
    try {
      o = await api(`/orders/${enc(key)}`);
    } catch (e) {
      if (e.status === 404) return h("div", {}, h("h1", {}, `Order ${key}`), h("p", { class: "muted" }, "The hub has no order with this key."));
      throw e;
    }
    const summary = o.order || {};
    const kindKey = (k) => (Array.isArray(k) ? `${k[0]} ${k[1]}` : k);
    const section = (title, id, head, rows) =>
      h("section", { "aria-labelledby": id }, h("h2", { id }, `${title} (${rows.length})`), rows.length ? h("table", { id: `${id}-table` }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, rows)) : h("p", { class: "muted" }, "None."));
    return h(
      "div",
      {},
      h("h1", {}, `Order ${summary.key || key} `, status(summary.state === "cancelled" ? "idle" : "ok", summary.state || "unknown")),
      h(
        "dl",
        { class: "kv card" },
        h("dt", {}, "Channel"), h("dd", {}, summary.channel || "—"),
        h("dt", {}, "Accepted by the ERP"), h("dd", {}, fmtTime(summary.accepted_at)),
        h("dt", {}, "Updated"), h("dd", {}, fmtTime(summary.updated_at)),
        h("dt", {}, "Related records"), h("dd", {}, (o.children || []).map(kindKey).join(", ") || "—"),
      ),
      summary.facts ? h("details", {}, h("summary", { "data-focus": "order-facts" }, "facts"), h("pre", {}, JSON.stringify(summary.facts, null, 2))) : null,
      section("Lifecycle", "h-events", ["When", "Event", "From → to", "Cause", "Reason"], (o.events || []).map((e) =>
        h("tr", {}, h("td", {}, fmtTime(e.at)), h("td", {}, e.event), h("td", {}, `${e.from_state || e.from || "—"} → ${e.to_state || e.to || "—"}`), h("td", {}, e.cause_kind ? `${e.cause_kind} ${e.cause_key || ""}` : "—"), h("td", { class: "reason" }, e.reason || "")),
      )),
      section("Deliveries", "h-attempts", ["When", "To", "Kind", "Key", "Op", "Outcome", "Error"], (o.attempts || []).map((a) =>
        h("tr", { "data-outcome": a.outcome, "data-dest": a.dest }, h("td", {}, fmtTime(a.at)), h("td", {}, a.dest), h("td", {}, a.kind), h("td", {}, a.key), h("td", {}, a.op), h("td", {}, status(a.outcome === "delivered" ? "ok" : a.outcome === "dead" ? "bad" : "warn", a.outcome)), h("td", { class: "reason" }, a.error || "")),
      )),
      section("Dead letters", "h-dl", ["Id", "State", "To/from", "Kind", "Reason"], (o.dead_letters || []).map((d) =>
        h("tr", {}, h("td", {}, link(`#/dead-letters/${d.id}`, `#${d.id}`)), h("td", {}, d.state), h("td", {}, d.endpoint), h("td", {}, d.kind), h("td", { class: "reason" }, d.reason)),
      )),
      section("Journal", "h-journal", ["Received", "From", "Kind", "External id", "Version", "Status", ""], (o.journal || []).map((j) =>
        h("tr", {}, h("td", {}, fmtTime(j.received_at)), h("td", {}, j.endpoint), h("td", {}, j.kind), h("td", {}, j.external_id), h("td", {}, j.version), h("td", {}, j.status, j.note ? h("div", { class: "muted" }, j.note) : null), h("td", {}, h("details", {}, h("summary", { "data-focus": `journal-${j.id}` }, "payload"), h("pre", {}, JSON.stringify(j.payload, null, 2))))),
      )),
    );
  }

  async function stockPage([sku]) {
    const form = h(
      "form",
      { class: "toolbar", id: "stock-form", onsubmit: (ev) => { ev.preventDefault(); const v = ev.target.elements.sku.value.trim(); if (v) location.hash = `#/stock/${enc(v)}`; } },
      h("label", { for: "sku" }, "SKU"),
      h("input", { id: "sku", name: "sku", value: sku || "", placeholder: "SKU-0001" }),
      h("button", { type: "submit" }, "Show"),
    );
    if (!sku) return h("div", {}, h("h1", {}, "Stock pool"), form);
    let p;
    try {
      p = await api(`/stock/${enc(sku)}`);
    } catch (e) {
      if (e.status === 404) return h("div", {}, h("h1", {}, "Stock pool"), form, h("p", { class: "muted" }, e.message));
      throw e;
    }
    const incoming = (p.positions || []).flatMap((l) => (Array.isArray(l.incoming) ? l.incoming : []).map((i) => ({ location: l.location, ...i })));
    return h(
      "div",
      {},
      h("h1", {}, `Stock pool: ${p.sku}`),
      form,
      h("p", { class: "muted" }, `Figures from ${p.source} (the ledger; the ERP is never called from here).`),
      h("h2", {}, "Positions"),
      (p.positions || []).length
        ? h(
            "table",
            { id: "positions-table" },
            h("thead", {}, h("tr", {}, ["Location", "On hand", "Committed", "Held", "Backordered", "Free", "Updated"].map((t, i) => h("th", { class: i ? "num" : null }, t)))),
            h(
              "tbody",
              {},
              p.positions.map((l) => {
                const free = l.on_hand - l.committed - l.held;
                return h("tr", {}, h("td", {}, l.location), h("td", { class: "num" }, l.on_hand), h("td", { class: "num" }, l.committed), h("td", { class: "num" }, l.held), h("td", { class: "num" }, l.backordered), h("td", { class: "num" }, free < 0 ? status("bad", `${free} oversold risk`) : free), h("td", { class: "num" }, fmtAgo(l.updated_at)));
              }),
            ),
          )
        : h("p", { class: "muted" }, "The ERP never reported this SKU."),
      h("h2", {}, "Available to sell per channel"),
      h(
        "table",
        { id: "channels-table" },
        h("thead", {}, h("tr", {}, ["Channel", "ATS", "Location", "On hand", "Committed", "Held", "Buffer", "Available", "Backorderable"].map((t, i) => h("th", { class: i === 0 || i === 2 ? null : "num" }, t)))),
        h(
          "tbody",
          {},
          (p.channels || []).flatMap((c) => {
            const a = c.availability;
            const locs = a.locations.length ? a.locations : [{ location: "—", on_hand: 0, committed: 0, held: 0, buffer: 0, available: 0 }];
            return locs.map((l, i) =>
              h(
                "tr",
                {},
                h("td", {}, i === 0 ? c.channel : ""),
                h("td", { class: "num" }, i === 0 ? a.ats : ""),
                h("td", {}, l.location),
                h("td", { class: "num" }, l.on_hand),
                h("td", { class: "num" }, l.committed),
                h("td", { class: "num" }, l.held),
                h("td", { class: "num" }, l.buffer),
                h("td", { class: "num" }, l.available),
                h("td", { class: "num" }, i === 0 ? a.backorderable : ""),
              ),
            );
          }),
        ),
      ),
      h("h2", {}, "Incoming"),
      incoming.length
        ? h("table", { id: "incoming-table" }, h("thead", {}, h("tr", {}, h("th", {}, "Location"), h("th", { class: "num" }, "Quantity"), h("th", {}, "ETA"))), h("tbody", {}, incoming.map((i) => h("tr", {}, h("td", {}, i.location), h("td", { class: "num" }, i.quantity), h("td", {}, i.eta || "—")))))
        : h("p", { class: "muted" }, "Nothing incoming."),
    );
  }

  // ---------- drift (reconciliation runs) ----------
  const CHECK_LABEL = { destination: "records", channel_stock: "channel stock vs available-to-sell", ledger: "ERP figures vs the hub's ledger" };
  const KEYS_SHOWN = 500; // drifted keys listed per check on a run's page; the API has them all
  const arr = (v) => (Array.isArray(v) ? v : []);
  /// A value of a report as text: JSON (so `"10"` and `10` differ), `—` when absent.
  const jsonText = (v) => (v === undefined ? "—" : JSON.stringify(v));
  const valueCell = (v) => h("td", { class: "value" }, v === undefined ? h("span", { class: "muted" }, "—") : h("code", {}, jsonText(v)));
  const checkLabel = (c) => CHECK_LABEL[c] || String(c);

  /// The checks of a stored run's report, without their keys.
  function checksOf(report) {
    return arr(report && report.results).map((r) => ({
      flow: r.flow,
      dest: r.dest,
      check: r.check,
      drifted: arr(r.comparison && r.comparison.drifted).length,
      healed: arr(r.healed).length,
      error: r.error || null,
    }));
  }

  /// Fill `runChecks` for `ids` (a few requests at a time; a failed one is left for the next refresh).
  async function loadRunChecks(ids) {
    const todo = ids.filter((id) => !runChecks.has(id));
    for (let i = 0; i < todo.length; i += 4) {
      await Promise.all(
        todo.slice(i, i + 4).map((id) =>
          api(`/reconcile/${enc(id)}`)
            .then((r) => runChecks.set(id, checksOf(r.report)))
            .catch((e) => {
              if (e instanceof AuthError) throw e;
            }),
        ),
      );
    }
  }

  function runStatus(r) {
    if (r.errors > 0) return status("bad", `${r.errors} check${r.errors > 1 ? "s" : ""} failed`);
    if (r.drifted > 0 && r.heal && r.healed >= r.drifted) return status("warn", `${r.drifted} drifted, healed`);
    if (r.drifted > 0) return status("bad", `${r.drifted} drifted`);
    return status("ok", "no drift");
  }

  async function driftPage([id]) {
    if (id) return driftRunPage(id);
    shownRun = null;
    const [runs, flows] = await Promise.all([api("/reconcile?limit=100"), api("/flows")]);
    await loadRunChecks(runs.slice(0, 20).map((r) => r.id));
    const op = isOperator();
    const runNow = async (ev) => {
      ev.preventDefault();
      const f = ev.target.elements;
      const flow = f.flow.value;
      const heal = f.heal.checked;
      if (heal && !confirm(`Heal: plan a corrective write for every drifted key of ${flow ? `flow ${flow}` : "every flow"}? Nothing is deleted.`)) return;
      reconciling = true;
      render(true);
      flash(`Reconciling ${flow ? `flow ${flow}` : "every flow"}${heal ? " and healing" : ""}: every destination is read…`);
      try {
        const r = await api("/reconcile", { method: "POST", body: { flows: flow ? [flow] : [], heal } });
        const drifted = arr(r.results).reduce((n, x) => n + arr(x.comparison && x.comparison.drifted).length, 0);
        flash(`Reconciliation finished: ${drifted} drifted key${drifted === 1 ? "" : "s"}`);
        if (r.id !== null && r.id !== undefined) location.hash = `#/drift/${enc(r.id)}`;
      } catch (e) {
        if (e instanceof AuthError) return showLogin(e);
        flash(`Reconciliation failed: ${e.message}`, true);
      } finally {
        reconciling = false;
        render(true);
      }
    };
    const rows = runs.map((r, i) => {
      const checks = runChecks.get(r.id);
      const href = `#/drift/${enc(r.id)}`;
      return h(
        "tr",
        { tabindex: 0, "data-href": href, "data-focus": `run-${r.id}`, "data-run": r.id },
        h("td", {}, link(href, `#${r.id}`, { tabindex: -1 })),
        h("td", {}, fmtTime(r.started_at), h("div", { class: "muted" }, `took ${fmtMs(Math.max(0, r.finished_at - r.started_at))}`)),
        h("td", {}, r.trigger, r.heal ? h("div", { class: "muted" }, "heal") : null),
        h(
          "td",
          { class: "checks" },
          checks
            ? checks.length
              ? checks.map((c) => h("div", { "data-check": `${c.flow}>${c.dest}` }, `${c.flow} → ${c.dest}`, h("span", { class: "muted" }, ` ${checkLabel(c.check)}: ${c.error ? "failed" : `${c.drifted} drifted${c.healed ? `, ${c.healed} healed` : ""}`}`)))
              : h("span", { class: "muted" }, "nothing checked")
            : h("span", { class: "muted" }, i < 20 ? "…" : "open the run"),
        ),
        h("td", {}, runStatus(r)),
        h("td", { class: "num" }, r.drifted),
        h("td", { class: "num" }, r.healed),
        h("td", { class: "num" }, r.errors),
      );
    });
    return h(
      "div",
      {},
      h("h1", {}, "Drift"),
      h("p", { class: "muted" }, "Reconciliation runs (scheduled per flow, concord reconcile, or Run now), newest first: what each destination holds compared with what the hub says it should hold."),
      h(
        "form",
        { class: "toolbar", id: "reconcile-form", onsubmit: runNow },
        h("label", { for: "reconcile-flow" }, "Flow"),
        h("select", { id: "reconcile-flow", name: "flow", disabled: !op || reconciling }, h("option", { value: "" }, "every flow"), flows.map((f) => h("option", { value: f.name }, f.name))),
        h("label", {}, h("input", { type: "checkbox", name: "heal", id: "reconcile-heal", disabled: !op || reconciling }), " heal (plan corrective writes)"),
        h("button", { type: "submit", class: "primary", id: "reconcile-run", "data-focus": "reconcile-run", disabled: !op || reconciling, title: op ? "Read every destination of the flow now and store the run" : "needs role operator" }, reconciling ? "Reconciling…" : "Run now"),
        op ? null : h("span", { class: "muted" }, "Running a reconciliation needs the operator role."),
      ),
      runs.length
        ? h(
            "table",
            { id: "runs-table", class: "rows" },
            h("thead", {}, h("tr", {}, ["Run", "When", "Trigger", "Flow → destination", "Result", "Drifted", "Healed", "Failed checks"].map((t, i) => h("th", { class: i >= 5 ? "num" : null }, t)))),
            h("tbody", {}, rows),
          )
        : h("p", { class: "muted", id: "no-runs" }, "No reconciliation run yet."),
    );
  }

  /// One drifted key as table rows: one per differing field; a missing or unknown record as one.
  function driftRows(d, healed) {
    const kind = d.drift;
    const healedCell = () => h("td", {}, healed.has(d.key) ? status("ok", "healed") : "");
    const base = { "data-key": d.key, "data-drift": kind };
    if (kind === "different") {
      const fields = arr(d.fields);
      return (fields.length ? fields : [{}]).map((f, i) =>
        h("tr", { ...base, "data-field": f.field }, h("td", {}, i === 0 ? d.key : ""), h("td", {}, i === 0 ? "different" : ""), h("td", {}, f.field === "" ? "(the record)" : f.field === undefined ? "—" : f.field), valueCell(f.expected), valueCell(f.actual), i === 0 ? healedCell() : h("td", {})),
      );
    }
    if (kind === "missing") return [h("tr", base, h("td", {}, d.key), h("td", {}, "missing"), h("td", { class: "muted" }, "not at the destination"), valueCell(d.expected), valueCell(undefined), healedCell())];
    if (kind === "unknown") return [h("tr", base, h("td", {}, d.key), h("td", {}, "unknown to the hub"), h("td", { class: "muted" }, "reported, never deleted"), valueCell(undefined), valueCell(d.actual), healedCell())];
    return [h("tr", base, h("td", {}, d.key), h("td", {}, String(kind)), h("td", {}), valueCell(undefined), valueCell(undefined), healedCell())];
  }

  async function driftRunPage(id) {
    let run = shownRun && String(shownRun.id) === id ? shownRun : null;
    try {
      if (!run) run = shownRun = await api(`/reconcile/${enc(id)}`);
    } catch (e) {
      if (e.status === 404 || e.status === 400) return h("div", {}, h("h1", {}, `Reconciliation run ${id}`), h("p", {}, link("#/drift", "← all runs")), h("p", { class: "muted" }, e.message));
      throw e;
    }
    const report = run.report || {};
    const results = arr(report.results);
    runChecks.set(run.id, checksOf(report));
    const checkRows = results.map((r) => {
      const c = r.comparison || {};
      return h(
        "tr",
        { "data-check": `${r.flow}>${r.dest}>${r.check}` },
        h("td", {}, link(`#/flows/${enc(r.flow)}`, r.flow)),
        h("td", {}, r.dest),
        h("td", {}, checkLabel(r.check), h("div", { class: "muted" }, String(r.kind))),
        h("td", { class: "num" }, c.expected),
        h("td", { class: "num" }, c.actual),
        h("td", { class: "num" }, c.matching),
        h("td", { class: "num" }, arr(c.in_flight).length),
        h("td", { class: "num" }, arr(c.drifted).length ? status("bad", arr(c.drifted).length) : 0),
        h("td", { class: "num" }, arr(r.healed).length),
        h("td", { class: "num" }, r.reads),
        h("td", { class: "reason" }, r.error ? status("bad", r.error) : ""),
      );
    });
    const sections = results
      .map((r, i) => [r, i])
      .filter(([r]) => arr(r.comparison && r.comparison.drifted).length || arr(r.comparison && r.comparison.in_flight).length)
      .map(([r, i]) => {
        const c = r.comparison || {};
        const drifted = arr(c.drifted);
        const inFlight = arr(c.in_flight);
        const healed = new Set(arr(r.healed));
        return h(
          "section",
          { "aria-labelledby": `check-${i}` },
          h("h2", { id: `check-${i}`, tabindex: -1 }, `${r.flow} → ${r.dest}: ${checkLabel(r.check)} (${drifted.length} drifted)`),
          drifted.length
            ? h(
                "table",
                { class: "drift-keys", "data-flow": r.flow, "data-dest": r.dest, "data-check": r.check },
                h("thead", {}, h("tr", {}, ["Key", "Drift", "Field", "Expected (the hub)", "Actual (the destination)", "Healed"].map((t) => h("th", {}, t)))),
                h("tbody", {}, drifted.slice(0, KEYS_SHOWN).map((d) => driftRows(d, healed))),
              )
            : null,
          drifted.length > KEYS_SHOWN ? h("p", { class: "muted" }, `${KEYS_SHOWN} of ${drifted.length} keys shown; GET /api/v1/reconcile/${run.id} has them all.`) : null,
          inFlight.length
            ? h("details", {}, h("summary", { "data-focus": `in-flight-${i}` }, `${inFlight.length} in flight (a delivery on the way: not drift)`), h("p", { class: "reason" }, inFlight.slice(0, KEYS_SHOWN).join(", "), inFlight.length > KEYS_SHOWN ? " …" : ""))
            : null,
        );
      });
    const skipped = arr(report.skipped);
    return h(
      "div",
      {},
      h("h1", {}, `Reconciliation run #${run.id} `, runStatus(run)),
      h("p", {}, link("#/drift", "← all runs")),
      h(
        "dl",
        { class: "kv card", id: "run-summary" },
        h("dt", {}, "Started"), h("dd", {}, fmtTime(run.started_at)),
        h("dt", {}, "Took"), h("dd", {}, fmtMs(Math.max(0, run.finished_at - run.started_at))),
        h("dt", {}, "Trigger"), h("dd", {}, run.trigger),
        h("dt", {}, "Heal"), h("dd", {}, run.heal ? "yes: one corrective write planned per drifted key" : "no (report only)"),
        h("dt", {}, "Drifted keys"), h("dd", {}, run.drifted),
        h("dt", {}, "Healed"), h("dd", {}, run.healed),
        h("dt", {}, "Failed checks"), h("dd", {}, run.errors),
        h("dt", {}, "Not reconciled"), h("dd", {}, skipped.length ? h("ul", { id: "run-skipped" }, skipped.map((x) => h("li", {}, x))) : "—"),
      ),
      h("h2", {}, `Checks (${results.length})`),
      results.length
        ? h(
            "table",
            { id: "checks-table" },
            h("thead", {}, h("tr", {}, ["Flow", "Destination", "Check", "Expected", "Listed", "Agree", "In flight", "Drifted", "Healed", "Pages read", "Error"].map((t, i) => h("th", { class: i >= 3 && i <= 9 ? "num" : null }, t)))),
            h("tbody", {}, checkRows),
          )
        : h("p", { class: "muted" }, "Nothing was checked."),
      sections,
    );
  }

  async function notFound() {
    return h("div", {}, h("h1", {}, "Not found"), h("p", {}, link("#/", "Overview")));
  }

  // ---------- search ----------
  async function search(q) {
    q = q.trim();
    if (!q) return;
    if (q.includes("/")) {
      location.hash = orderHref(q);
      return;
    }
    try {
      const flows = await api("/flows");
      if (flows.some((f) => f.name === q)) {
        location.hash = `#/flows/${enc(q)}`;
        return;
      }
    } catch (e) {
      if (e instanceof AuthError) return showLogin(e);
    }
    location.hash = `#/stock/${enc(q)}`;
  }

  // ---------- keyboard ----------
  function rows() {
    return [...view.querySelectorAll("table.rows tbody tr[tabindex]")];
  }
  function moveRow(delta) {
    const all = rows();
    if (!all.length) return;
    const cur = all.indexOf(document.activeElement.closest ? document.activeElement.closest("tr") : null);
    const next = all[Math.max(0, Math.min(all.length - 1, cur < 0 ? 0 : cur + delta))];
    next.focus();
  }
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable;
    if (ev.key === "Escape" && t.id === "q") {
      t.blur();
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (gPending) {
      gPending = false;
      const go = { o: "#/", d: "#/dead-letters", a: "#/alerts", r: "#/orders", s: "#/stock", c: "#/drift", f: "#/" }[ev.key];
      if (go) {
        ev.preventDefault();
        location.hash = go;
      }
      return;
    }
    switch (ev.key) {
      case "/":
        ev.preventDefault();
        $("#q").focus();
        $("#q").select();
        break;
      case "g":
        gPending = true;
        setTimeout(() => (gPending = false), 1500);
        break;
      case "?":
        $("#help").showModal();
        break;
      case "j":
        moveRow(1);
        break;
      case "k":
        moveRow(-1);
        break;
      case ".":
        render(true);
        break;
      case "l":
        $("#live").click();
        break;
      case "x": {
        const tr = t.closest && t.closest("tr[data-dead-letter]");
        const box = tr && tr.querySelector("input[type=checkbox]");
        if (box) box.click();
        break;
      }
      case "R": {
        const b = $("#replay-selected");
        if (b && !b.disabled) b.click();
        break;
      }
      case "Enter": {
        const tr = t.closest && t.closest("tr[data-href]");
        if (tr && t === tr) location.hash = tr.dataset.href;
        break;
      }
      default:
    }
  });
  view.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-href]");
    if (tr && !ev.target.closest("a,button,input,summary,select")) location.hash = tr.dataset.href;
  });

  // ---------- wiring ----------
  $("#search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search($("#q").value);
    $("#q").blur();
  });
  $("#help-open").addEventListener("click", () => $("#help").showModal());
  $("#logout").addEventListener("click", async () => {
    await api("/session", { method: "DELETE" }).catch(() => null);
    me = null;
    showWho();
    location.hash = "#/login";
  });
  $("#live").addEventListener("change", (ev) => {
    live = ev.target.checked;
    schedule();
  });
  function schedule() {
    clearInterval(timer);
    if (live) timer = setInterval(() => { if (route().parts[0] !== "login" && !$("#help").open) render(true); }, REFRESH_MS);
  }
  window.addEventListener("hashchange", () => render(false));
  schedule();
  render(false);
})();
