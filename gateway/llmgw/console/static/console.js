// The operator console. Everything it shows and changes goes through the gateway's admin and
// monitoring APIs with the session cookie (changes with the session's CSRF token): it holds
// no logic of its own. Every value from the API is put in the page as text (textContent),
// never as markup. console.js: signing in, talking to the gateway, which page is shown;
// pages.js: the pages; dom.js: building elements from text.

import {$, el} from "./dom.js";
import {makePages} from "./pages.js";

let session = null;

// ---- talking to the gateway ------------------------------------------------------------
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const resp = await fetch(path, {method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401 && path !== "/dashboard/session") { showSignIn(); throw new Error("signed out"); }
  if (!resp.ok) throw new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
  return data;
}

// Each visit to a page has a number; a slower earlier one never draws over a later one.
let visit = 0;

function render(seq, title, ...content) {
  if (seq !== visit) return;
  $("page").replaceChildren(el("h2", {}, title), ...content);
}

function fail(err) { $("error").textContent = err.message; }

async function act(method, path, body, then) {
  $("error").textContent = "";
  try { await api(method, path, body); await then(); } catch (err) { fail(err); }
}

const pages = makePages({api, render, route, act, fail, showSecret, session: () => session});

function showSecret(secret, title) {
  const value = el("code", {id: "secret"}, secret);
  const copy = el("button", {type: "button", id: "copy-secret", on: {click: async () => {
    await navigator.clipboard.writeText(secret).catch(() => {});
    copy.textContent = "Copied";
  }}}, "Copy");
  $("page").prepend(el("div", {class: "secret", role: "status"}, el("strong", {}, title), " (shown once): ", value, " ", copy));
}

// ---- signing in and out -------------------------------------------------------------------
function showSignIn() {
  session = null;
  $("nav").hidden = true; $("page").hidden = true; $("sign-in").hidden = false;
}

async function signedIn(who) {
  session = who;
  $("sign-in").hidden = true; $("nav").hidden = false; $("page").hidden = false;
  $("who").textContent = who.role === "admin" ? "admin" : `monitor of ${who.org_id}`;
  for (const link of document.querySelectorAll("[data-role=admin]")) link.hidden = who.role !== "admin";
  await route();
}

async function route() {
  $("error").textContent = "";
  const name = location.hash.slice(1) || "overview";
  const allowed = session.role === "admin" || ["overview", "backends", "usage"].includes(name);
  const shown = allowed && pages[name] ? name : "overview";
  const seq = ++visit;
  try {
    await pages[shown](seq);
    if (seq === visit) $("page").dataset.page = shown;
  } catch (err) { fail(err); }
}

$("sign-in-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = e.target.elements.token.value;
  const resp = await fetch("/dashboard/session", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({token})});
  const data = await resp.json().catch(() => ({}));
  e.target.reset();
  if (!resp.ok) { $("sign-in-error").textContent = (data.error && data.error.message) || "sign-in failed"; return; }
  $("sign-in-error").textContent = "";
  await signedIn(data);
});

$("sign-out").addEventListener("click", async () => {
  await api("DELETE", "/dashboard/session").catch(() => {});
  showSignIn();
});

window.addEventListener("hashchange", () => { if (session) route(); });

fetch("/dashboard/session", {credentials: "same-origin"})
  .then((r) => (r.ok ? r.json().then(signedIn) : showSignIn()))
  .catch(showSignIn);
