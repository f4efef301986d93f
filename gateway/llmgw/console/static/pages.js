// The console's pages, each drawn from the admin and monitoring APIs. `app` is what they
// need of console.js: api(), render(), route(), act(), fail(), showSecret(), session().

import {$, barChart, changedLimits, el, limitInputs, num, patterns, table, when} from "./dom.js";

export function makePages(app) {
  const {api, render, route, act, fail, showSecret} = app;
  const session = () => app.session();

  const pages = {
    async overview(seq) {
      const [health, last] = await Promise.all([api("GET", "/health/detailed"), api("GET", "/monitor/overview")]);
      const backends = Object.values(health.pools).flatMap((p) => p.backends);
      const pct = (x) => (x === null || x === undefined ? "" : `${(100 * x).toFixed(1)} %`);
      const ms = (x) => (x === null || x === undefined ? "" : `${Math.round(1000 * x)} ms`);
      render(seq, "Overview",
        el("p", {}, `Status: ${health.status}${health.draining ? " (draining)" : ""}. `,
          `${backends.filter((b) => b.healthy).length} of ${backends.length} backends healthy, `,
          `${num(backends.reduce((n, b) => n + b.in_flight, 0))} requests in flight here.`),
        el("h3", {}, `The last ${last.window_secs < 120 ? `${Math.round(last.window_secs)} seconds`
          : `${Math.round(last.window_secs / 60)} minutes`} on this gateway instance`),
        table([
          ["Model", (r) => (r.model === "-" ? "(none: refused before a model)" : r.model)],
          ["Requests/s", (r) => r.requests_per_s], ["Tokens/s", (r) => r.tokens_per_s],
          ["Errors (5xx)", (r) => pct(r.error_rate)], ["Refused (4xx)", (r) => pct(r.refused_rate)],
          ["p50", (r) => ms(r.latency_p50_s)], ["p95", (r) => ms(r.latency_p95_s)], ["p99", (r) => ms(r.latency_p99_s)],
        ], last.models),
        await usageTable());
    },

    async backends(seq) {
      const health = await api("GET", "/health/detailed");
      const rows = Object.entries(health.pools).flatMap(([pool, p]) =>
        p.backends.map((b) => ({pool, queued: p.queued, ...b})));
      render(seq, "Backends", table([
        ["Pool", (r) => r.pool], ["Backend", (r) => r.name],
        ["Health", (r) => (r.healthy ? "healthy" : "unhealthy")], ["Breaker", (r) => r.breaker],
        ["In flight", (r) => r.in_flight], ["Queued (pool)", (r) => r.queued],
        ["Running", (r) => r.state && r.state.running], ["Waiting", (r) => r.state && r.state.waiting],
        ["KV usage", (r) => (r.state && r.state.kv_usage !== null && r.state.kv_usage !== undefined
          ? `${(100 * r.state.kv_usage).toFixed(0)} %` : "")],
      ], rows));
    },

    async orgs(seq) {
      const {data} = await api("GET", "/admin/orgs?limit=500");
      const name = el("input", {name: "org-name", required: "", maxlength: "64", placeholder: "name"});
      const form = el("form", {id: "org-create", on: {submit: async (e) => {
        e.preventDefault();
        const made = await api("POST", "/admin/orgs", {name: name.value, key: {name: "first"}}).catch(fail);
        if (made) { await route(); showSecret(made.api_key, `First key of ${made.org.name}`); }
      }}}, name, el("button", {type: "submit"}, "Create organisation"));
      render(seq, "Organisations", form, table([
        ["Name", (o) => o.name], ["Id", (o) => o.id], ["Status", (o) => o.status],
        ["Created", (o) => when(o.created_at)],
        ["", (o) => el("span", {},
          el("button", {type: "button", on: {click: () => editOrg(o)}}, "Limits"),
          el("button", {type: "button", on: {click: () => act("PATCH", `/admin/orgs/${o.id}`,
            {status: o.status === "active" ? "suspended" : "active"}, route)}},
            o.status === "active" ? "Suspend" : "Activate"),
          el("button", {type: "button", on: {click: () => {
            if (confirm(`Delete ${o.name}, all its keys and files?`)) act("DELETE", `/admin/orgs/${o.id}`, undefined, route);
          }}}, "Delete"))],
      ], data));
    },

    async keys(seq) {
      const {data: orgs} = await api("GET", "/admin/orgs?limit=500");
      const pick = el("select", {name: "org"}, ...orgs.map((o) => el("option", {value: o.id}, o.name)));
      const list = el("div", {});
      const scopes = ["chat", "text2sql", "embeddings", "rerank", "batch", "monitor"];
      const boxes = scopes.map((s) => el("input", {type: "checkbox", value: s, ...(s === "chat" ? {checked: ""} : {})}));
      const keyName = el("input", {name: "key-name", maxlength: "128", placeholder: "key name"});
      const keyModels = el("input", {name: "key-models", placeholder: "models (all of its organisation's)"});
      const keyLimits = limitInputs({}, {});
      const show = async () => {
        if (!pick.value) return;
        const {data} = await api("GET", `/admin/orgs/${pick.value}/keys`);
        list.replaceChildren(table([
          ["Name", (k) => k.name], ["Key id", (k) => k.key_id], ["Scopes", (k) => k.scopes.join(", ")],
          ["Status", (k) => k.status], ["Expires", (k) => when(k.expires_at)],
          ["", (k) => (k.status !== "active" ? "" : el("span", {},
            el("button", {type: "button", on: {click: async () => {
              const r = await api("POST", `/admin/keys/${k.key_id}/rotate`, {grace_secs: 3600}).catch(fail);
              if (r) { await show(); showSecret(r.api_key, "Rotated: the old key works for one more hour"); }
            }}}, "Rotate"),
            el("button", {type: "button", on: {click: () => act("DELETE", `/admin/keys/${k.key_id}`, undefined, show)}}, "Revoke")))],
        ], data));
      };
      const form = el("form", {id: "key-create", on: {submit: async (e) => {
        e.preventDefault();
        const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
        const made = await api("POST", `/admin/orgs/${pick.value}/keys`,
          {name: keyName.value || null, scopes: chosen, models: patterns(keyModels.value),
           limits: Object.fromEntries(Object.entries(changedLimits(keyLimits, {})).filter(([, v]) => v !== null))}).catch(fail);
        if (made) { await show(); showSecret(made.api_key, `New key ${made.key.key_id}`); }
      }}}, keyName, ...scopes.map((s, i) => el("label", {}, boxes[i], s)), keyModels,
        el("details", {}, el("summary", {}, "Limits (only stricter than its organisation's)"), ...keyLimits.map((l) => l.label)),
        el("button", {type: "submit"}, "Create key"));
      pick.addEventListener("change", show);
      render(seq, "Keys", el("label", {}, "Organisation ", pick), form, list);
      await show();
    },

    async usage(seq) {
      const orgs = session().role === "admin" ? (await api("GET", "/admin/orgs?limit=500")).data : [];
      const pick = el("select", {name: "usage-org"}, ...orgs.map((o) => el("option", {value: o.id}, o.name)));
      const grain = el("select", {name: "granularity"},
        ...[["hour", 48], ["day", 30], ["month", 3]].map(([g, n]) => el("option", {value: g, "data-count": n}, `per ${g}`)));
      grain.value = "day";
      const key = el("input", {name: "usage-key", placeholder: "one key id (all keys)", maxlength: "16",
                               pattern: "[0-9a-f]{16}"});
      const out = el("div", {});
      const draw = async () => {
        const org = session().role === "admin" ? pick.value : session().org_id;
        if (!org) { out.replaceChildren(el("p", {}, "No organisation yet.")); return; }
        const count = grain.selectedOptions[0].dataset.count;
        const query = new URLSearchParams({org_id: org, granularity: grain.value, count});
        if (key.value.trim()) query.set("key_id", key.value.trim());
        const {data} = await api("GET", `/monitor/usage?${query}`);
        const label = (r) => when(r.start).slice(0, grain.value === "hour" ? 16 : grain.value === "day" ? 10 : 7);
        out.replaceChildren(
          el("a", {href: `/monitor/usage?${query}&format=csv`, download: "", id: "usage-csv"}, "Download CSV"),
          barChart(data, (r) => r.requests, label, "Requests"),
          barChart(data, (r) => r.prompt_tokens + r.completion_tokens, label, "Tokens"),
          table([["From (UTC)", label], ["Requests", (r) => num(r.requests)], ["Errors", (r) => num(r.errors)],
                 ["Prompt tokens", (r) => num(r.prompt_tokens)], ["Completion tokens", (r) => num(r.completion_tokens)]],
                data.slice().reverse()));
      };
      pick.addEventListener("change", draw);
      grain.addEventListener("change", draw);
      key.addEventListener("change", () => draw().catch(fail));
      render(seq, "Usage", await usageTable(),
        el("h3", {}, "Over time"), session().role === "admin" ? el("label", {}, "Organisation ", pick) : "", grain, key, out);
      await draw();
    },

    async quotas(seq) {
      const {data} = await api("GET", "/admin/quotas?limit=500");
      const names = data.length ? Object.keys(data[0].limits) : [];
      // One row per organisation: each limit as used / configured, its reset in the cell's title.
      const cell = (v) => {
        const left = v.remaining === null ? "" : `${num(v.remaining)} left`;
        const title = [left, v.resets_at ? `resets ${when(v.resets_at)} UTC` : ""].filter(Boolean).join("; ");
        const span = el("span", title ? {title} : {},
                        `${num(v.used)} / ${v.limit === null ? "none" : num(v.limit)}`);
        if (v.limit !== null && v.used >= v.limit) span.className = "spent";
        return span;
      };
      const why = el("div", {id: "rejections"});
      const refusals = async (q) => {
        const {data: rows} = await api("GET", `/admin/orgs/${q.org_id}/rejections`);
        why.replaceChildren(el("h3", {}, `Latest refusals (429) of ${q.name}`), rows.length ? table([
          ["When (UTC)", (r) => when(r.at)], ["Key", (r) => r.key_id], ["Limit", (r) => r.code],
          ["Told to wait (s)", (r) => r.retry_after_secs], ["Refusals", (r) => num(r.refusals)],
        ], rows) : el("p", {}, "None in the last 7 days."));
      };
      render(seq, "Quotas", el("p", {}, "Used / configured, now; hover a figure for what is left and when it resets."),
        why,
        table([["Organisation", (q) => q.name], ...names.map((n) => [n, (q) => cell(q.limits[n])]),
               ["", (q) => el("button", {type: "button", on: {click: () => refusals(q).catch(fail)}}, "Why refused?")]],
              data));
    },

    async audit(seq) {
      const org = el("input", {name: "audit-org", placeholder: "organisation id", maxlength: "64"});
      const action = el("input", {name: "audit-action", placeholder: "action, or a kind: key.", maxlength: "65"});
      const out = el("div", {});
      const show = async () => {
        const query = new URLSearchParams({limit: "100"});
        if (org.value) query.set("org_id", org.value.trim());
        if (action.value) query.set("action", action.value.trim());
        const {data} = await api("GET", `/admin/audit?${query}`);
        out.replaceChildren(table([
          ["When", (e) => when(e.ts)], ["Actor", (e) => e.actor], ["Action", (e) => e.action],
          ["Target", (e) => e.target], ["Request", (e) => e.request_id],
        ], data));
      };
      const form = el("form", {id: "audit-filter", on: {submit: (e) => { e.preventDefault(); show().catch(fail); }}},
        org, action, el("button", {type: "submit"}, "Filter"));
      render(seq, "Audit trail", form, out);
      await show();
    },

    async batches(seq) {
      const {data} = await api("GET", "/admin/batches?limit=100");
      render(seq, "Batches", table([
        ["Organisation", (b) => b.org_id], ["Batch", (b) => b.id], ["Status", (b) => b.status],
        ["Done", (b) => `${num(b.request_counts.completed + b.request_counts.failed)} / ${num(b.request_counts.total)}`],
        ["", (b) => (["validating", "in_progress"].includes(b.status)
          ? el("button", {type: "button", on: {click: () => act("POST", `/admin/orgs/${b.org_id}/batches/${b.id}/cancel`, undefined, route)}}, "Cancel")
          : "")],
      ], data));
    },
  };

  async function usageTable() {
    const {bucket, data} = await api("GET", "/monitor/key_usage?limit=100");
    return el("section", {}, el("h3", {}, `Per key, ${bucket} (UTC)`), table([
      ["Key", (k) => k.key_id], ["Organisation", (k) => k.org_id], ["Requests", (k) => num(k.requests)],
      ["Errors", (k) => num(k.errors)], ["Prompt tokens", (k) => num(k.prompt_tokens)],
      ["Completion tokens", (k) => num(k.completion_tokens)],
    ], data));
  }

  function editOrg(org) {
    const inputs = limitInputs(org.limits, org.effective_limits);
    const models = el("input", {name: "org-models", value: (org.models || []).join(", "),
                                placeholder: "models: every one"});
    const form = el("form", {id: "org-edit", on: {submit: async (e) => {
      e.preventDefault();
      const change = changedLimits(inputs, org.limits);
      const wanted = patterns(models.value);
      if (JSON.stringify(wanted) !== JSON.stringify(org.models ?? null)) change.models = wanted;
      await act("PATCH", `/admin/orgs/${org.id}`, change, route);
    }}}, el("strong", {}, `Limits of ${org.name}`), ...inputs.map((l) => l.label), models,
      el("button", {type: "submit"}, "Save"));
    $("org-edit")?.remove();
    $("page").append(form);
  }

  return pages;
}
