// Building the page from text: elements, tables, bar charts and the limit inputs. Values go
// in as text nodes and attribute values, never as markup.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

export function table(columns, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, ...rows.map((row) => el("tr", {},
      ...columns.map(([, cell]) => { const v = cell(row); return el("td", {}, v instanceof Node ? v : String(v ?? "")); })))));
}

export const when = (secs) => (secs ? new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
export const num = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en"));

// A bar per bucket, drawn as SVG elements (values go in as numbers and text nodes).
export function barChart(rows, value, label, title) {
  const NS = "http://www.w3.org/2000/svg", W = 960, H = 140;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const top = Math.max(1, ...rows.map(value));
  const step = W / Math.max(1, rows.length);
  rows.forEach((row, i) => {
    const h = (value(row) / top) * H;
    const bar = document.createElementNS(NS, "rect");
    for (const [k, v] of Object.entries({x: i * step + 1, y: H - h, width: Math.max(1, step - 2), height: h})) bar.setAttribute(k, v);
    const tip = document.createElementNS(NS, "title");
    tip.textContent = `${label(row)}: ${num(value(row))}`;
    bar.append(tip);
    svg.append(bar);
  });
  const caption = document.createElementNS(NS, "text");
  caption.setAttribute("x", 0); caption.setAttribute("y", H + 16);
  caption.textContent = `${title} (max ${num(top)})`;
  svg.append(caption);
  return svg;
}

export const LIMITS = ["rps", "burst", "rpm_limit", "tpm_limit", "max_concurrent", "daily_token_limit",
  "daily_request_limit", "monthly_token_limit", "max_context_tokens", "max_output_tokens"];

// One number input per limit: its value the one set here, its placeholder the one in force.
export function limitInputs(set, effective) {
  return LIMITS.map((name) => {
    const input = el("input", {type: "number", min: "1", step: "1", name, value: set[name] ?? undefined,
                               placeholder: effective[name] ?? "default"});
    return {name, input, label: el("label", {class: "limit"}, name, input)};
  });
}

// What the inputs change: a number, or null (emptied: back to the default).
export function changedLimits(inputs, set) {
  const out = {};
  for (const {name, input} of inputs) {
    const value = input.value === "" ? null : Number(input.value);
    if (value !== (set[name] ?? null)) out[name] = value;
  }
  return out;
}

export const patterns = (text) => (text.trim() ? text.split(",").map((p) => p.trim()).filter(Boolean) : null);
