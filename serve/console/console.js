// The OpenSesame console: no build step, no dependencies. It calls the service's own HTTP API (same origin):
// GET and POST /specs, POST /predict, POST /feedback. What the user set up (key, specs, history) stays in this browser.
"use strict";

const $ = (id) => document.getElementById(id);
const stored = (name, fallback) => JSON.parse(localStorage.getItem(`opensesame.${name}`) ?? JSON.stringify(fallback));
const store = (name, value) => localStorage.setItem(`opensesame.${name}`, JSON.stringify(value));

const state = {
  userId: stored("userId", `console-${Math.random().toString(36).slice(2, 10)}`),
  specs: stored("specs", []),          // [{spec_id, title, operations}] registered from this browser
  specId: stored("specId", ""),
  // [{endpoint: "GET /v1/invoices/in_123", response?: {...}}, ...], oldest first
  history: stored("history", []).map((call) => (typeof call === "string" ? { endpoint: call } : call)),
  prediction: null,                    // the last /predict answer
};
store("userId", state.userId);

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

async function call(method, path, body) {
  const headers = { "content-type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => ({ error: "not json", detail: response.statusText }));
  if (!response.ok) {
    const retry = response.headers.get("Retry-After");
    throw new Error(`${response.status} ${answer.error}: ${answer.detail}${retry ? ` (retry after ${retry} s)` : ""}`);
  }
  return answer;
}

function renderSpecs() {
  const select = $("spec-select");
  select.replaceChildren(...(state.specs.length ? [] : [new Option("none yet", "")]),
    ...state.specs.map((s) => new Option(`${s.title} (${s.operations} operations)`, s.spec_id)));
  select.value = state.specId;
}

function renderHistory() {
  $("history").replaceChildren(...state.history.map((call, i) => {
    const item = document.createElement("li");
    item.textContent = call.endpoint + (call.response ? " (with its response) " : " ");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "remove this call";
    remove.addEventListener("click", () => { state.history.splice(i, 1); store("history", state.history); renderHistory(); });
    item.append(remove);
    return item;
  }));
}

function renderPredictions() {
  const items = (state.prediction?.predictions ?? []).map((p, i) => {
    const item = document.createElement("li");
    item.tabIndex = 0;
    item.dataset.call = `${p.method} ${p.path}`;
    item.dataset.endpoint = p.endpoint;
    const path = Object.assign(document.createElement("span"), { className: "path", textContent: `${i + 1}. ${p.method} ${p.path}` });
    const score = Object.assign(document.createElement("span"), { className: "score", textContent: p.score.toFixed(3) });
    const reason = Object.assign(document.createElement("span"), { className: "reason", textContent: `${p.endpoint}: ${p.reason}` });
    item.append(path, score, request(p), reason);
    item.addEventListener("click", (e) => { if (!e.target.closest("input")) accept(i); });
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") accept(i); });
    return item;
  });
  $("predictions").replaceChildren(...items);
}

// The rest of the request: the query and body filled (each value titled with where it came from) and an input
// for each required field nothing filled, read when the call is accepted.
function request(p) {
  const block = Object.assign(document.createElement("span"), { className: "request" });
  const filled = (values, label) => {
    const names = Object.keys(values ?? {});
    if (!names.length) return;
    const line = Object.assign(document.createElement("span"), { className: "filled", textContent: `${label} ` });
    line.append(...names.map((name) => Object.assign(document.createElement("code"), {
      textContent: `${name}=${JSON.stringify(values[name])}`, title: `from the ${p.filled_from?.[name] ?? "request"}`,
    })));
    block.append(line);
  };
  filled(p.query, "query");
  filled(p.body, "body");
  if (p.missing?.length) {
    const line = Object.assign(document.createElement("span"), { className: "missing", textContent: "needs " });
    line.append(...p.missing.map((name) => Object.assign(document.createElement("input"), {
      placeholder: name, title: `${name}: required, nothing filled it`, name,
    })));
    block.append(line);
  }
  return block;
}

// The call accepted, with what the user typed for its missing fields: a path parameter into the path, the rest
// sent as the call's params.
function made(p, item) {
  let path = p.path;
  const params = { ...p.query, ...p.body };
  for (const input of item?.querySelectorAll(".missing input") ?? []) {
    const value = input.value.trim();
    if (!value) continue;
    if (path.includes(`{${input.name}}`)) path = path.replace(`{${input.name}}`, encodeURIComponent(value));
    else params[input.name] = value;
  }
  return { endpoint: `${p.method} ${path}`, params };
}

async function register() {
  const url = $("spec-url").value.trim();
  const text = $("spec-text").value.trim();
  if (!url && !text) return say("give a spec URL or paste the spec", true);
  say("registering the spec…");
  try {
    const info = await call("POST", "/specs", url ? { spec_url: url } : { spec: text });
    state.specs = [info, ...state.specs.filter((s) => s.spec_id !== info.spec_id)];
    state.specId = info.spec_id;
    store("specs", state.specs);
    store("specId", state.specId);
    renderSpecs();
    $("spec-url").value = "";
    $("spec-text").value = "";
    say(`registered ${info.title}: ${info.operations} operations`);
  } catch (error) { say(error.message, true); }
}

async function predict() {
  if (!state.specId) return say("register or pick a spec first", true);
  say("predicting…");
  try {
    state.prediction = await call("POST", "/predict", {
      user_id: state.userId, spec_id: state.specId, prompt: $("prompt").value,
      events: state.history, k: 5,
    });
    renderPredictions();
    say(`${state.prediction.model_version}, ${state.prediction.timing.total.toFixed(1)} ms`);
  } catch (error) { say(error.message, true); }
}

async function accept(rank) {
  const chosen = state.prediction?.predictions[rank];
  if (!chosen) return;
  const accepted = made(chosen, $("predictions").children[rank]);
  try {
    const label = await call("POST", "/feedback", { prediction_id: state.prediction.prediction_id, called: accepted.endpoint });
    addCall(Object.keys(accepted.params).length ? accepted : { endpoint: accepted.endpoint });
    say(`recorded ${accepted.endpoint} (rank ${label.rank}, ${label.stored})`);
    await predict();
  } catch (error) { say(error.message, true); }
}

function addCall(call) {
  state.history.push(call);
  store("history", state.history);
  renderHistory();
}

$("api-key").value = stored("apiKey", "");
$("api-key").addEventListener("change", () => store("apiKey", $("api-key").value.trim()));
$("spec-select").addEventListener("change", (e) => { state.specId = e.target.value; store("specId", state.specId); });
$("spec-register").addEventListener("click", register);
$("call-input").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || !e.target.value.trim()) return;
  const text = $("call-response").value.trim();
  let response;
  try { response = text ? JSON.parse(text) : undefined; } catch (error) {
    return say(`the response is not JSON (${error.message}): fix it or leave it empty`, true);
  }
  addCall(response === undefined ? { endpoint: e.target.value.trim() } : { endpoint: e.target.value.trim(), response });
  e.target.value = "";
  $("call-response").value = "";
});
$("history-clear").addEventListener("click", () => { state.history = []; store("history", []); renderHistory(); });
$("predict").addEventListener("click", predict);
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); predict(); return; }
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (!typing && /^[1-9]$/.test(e.key)) accept(Number(e.key) - 1);
});
// The specs this key (or address) registered from anywhere lately, beside those remembered in this browser.
async function loadSpecs() {
  try {
    const listed = await call("GET", "/specs");
    const known = new Set(listed.map((s) => s.spec_id));
    state.specs = [...listed, ...state.specs.filter((s) => !known.has(s.spec_id))];
    store("specs", state.specs);
    renderSpecs();
  } catch (error) { say(`listing specs: ${error.message}`, true); }
}

renderSpecs();
renderHistory();
loadSpecs();
