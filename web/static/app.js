// The Spells dashboard: a client of the spells.v1 protocol (PROTOCOL.md),
// like any other. It signs in with a wallet (or a burner key kept in this
// browser), holds a per-session P-256 delegate key in WebCrypto (not
// extractable, kept in IndexedDB so a reload resumes the session), signs
// every command with it, and mirrors the vault from snapshot + diffs.

const { ethers } = window;
const $ = (sel) => document.querySelector(sel);
const enc = new TextEncoder();

// ---- small helpers -------------------------------------------------------

const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function idb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("spells", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("keys");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
async function idbDo(mode, fn) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("keys", mode);
    const req = fn(tx.objectStore("keys"));
    tx.oncomplete = () => resolve(req && req.result);
    tx.onerror = () => reject(tx.error);
  });
}
const keyPut = (id, v) => idbDo("readwrite", (s) => s.put(v, id));
const keyGet = (id) => idbDo("readonly", (s) => s.get(id));

const fmtTime = (ms) => ms ? new Date(ms).toLocaleTimeString() : "—";
const fmtNum = (v) => Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 });
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

// ---- state ---------------------------------------------------------------

const S = {
  ws: null,
  challenge: null,
  session: JSON.parse(localStorage.getItem("spells.session") || "null"), // {vault, id, seq, version}
  delegate: null, // CryptoKeyPair
  triggers: new Map(),
  intents: [],
  evaluations: [],
  version: 0,
  loaded: false,
  signals: new Map(), // name -> [{value, at}]
  pending: new Map(), // seq -> description
  retry: 500,
};

function saveSession() {
  if (S.session) S.session.version = S.version;
  localStorage.setItem("spells.session", JSON.stringify(S.session));
}

// ---- connection ----------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/ws`, "spells.v1");
  S.ws = ws;
  // One message may hold several frames, one per line (PROTOCOL.md §1).
  ws.onmessage = (ev) => ev.data.split("\n").forEach((line) => onFrame(JSON.parse(line)));
  ws.onclose = (ev) => {
    setStatus(false, `disconnected (${ev.code}${ev.reason ? ": " + ev.reason : ""}); retrying…`);
    S.retry = Math.min(S.retry * 2, 10000);
    setTimeout(connect, S.retry);
  };
  ws.onopen = () => { S.retry = 500; };
}

function send(frame) { S.ws.send(JSON.stringify(frame)); }

async function onFrame(f) {
  switch (f.type) {
    case "challenge":
      S.challenge = f;
      if (S.session && await resume()) return;
      setStatus(true, "connected — sign in");
      return;
    case "ready":
      S.session = { vault: f.vault, id: f.session, seq: Math.max(f.lastSeq, S.session?.seq || 0), version: S.version };
      saveSession();
      if (S.newDelegate) { await keyPut(f.session, S.newDelegate); S.newDelegate = null; }
      setStatus(true, "live");
      $("#who").textContent = f.vault;
      show(true);
      return;
    case "snapshot": applySnapshot(f.state); return;
    case "diff": applyDiff(f); return;
    case "ack": S.pending.delete(f.seq); $("#cmd-error").textContent = ""; return;
    case "error": return onError(f);
    case "signals": for (const [n, pts] of Object.entries(f.series)) { S.signals.set(n, pts); } renderSignals(); return;
    case "signal": addPoint(f.name, { value: f.value, at: f.at }); return;
  }
}

// notice shows a message that stays until the page is reloaded: what the
// vault or the node says about the user's data, not about one click.
function notice(text) {
  const n = $("#notice");
  n.textContent = text;
  n.classList.remove("hidden");
}

function onError(f) {
  const text = `${f.code}: ${f.message}`;
  if (f.code === "vault_rolled_back") {
    // The vault no longer has the version this page showed: it lost
    // changes it had acknowledged. Say so, then show it as it is (a
    // refused resume leaves this socket's nonce unused).
    notice(`This vault lost data: this page had seen version ${S.version}, and the node's copy of the vault is ` +
      "older, so changes it had confirmed are gone. What is shown below is what the vault holds now. (vault_rolled_back)");
    S.loaded = false;
    resume();
    return;
  }
  if (f.code === "vault_quarantined") {
    notice("This vault's file could not be read, so the node set it aside and does not serve it. Nothing was " +
      "replaced or deleted: ask the node's operator to restore it (the node's log names the file).");
    setStatus(false, "vault unavailable");
    show(false);
    return;
  }
  if (f.code === "storage_full") {
    const where = f.seq ? "#cmd-error" : "#signin-error";
    if (f.seq) S.pending.delete(f.seq);
    $(where).textContent = "The node's disk is full, so nothing was saved. Try again in a while. (storage_full)";
    return;
  }
  if (!S.loaded && ["session_unknown", "session_expired", "nonce_reused", "bad_cmd_signature", "wrong_vault"].includes(f.code)) {
    // The stored session cannot be resumed: forget it and sign in again.
    S.session = null;
    saveSession();
    setStatus(true, "session ended — sign in again");
    show(false);
    return;
  }
  if (f.seq) { S.pending.delete(f.seq); $("#cmd-error").textContent = text; return; }
  $("#signin-error").textContent = text;
}

function setStatus(on, text) {
  const s = $("#status");
  s.textContent = text;
  s.className = "status " + (on ? "on" : "off");
}

function show(signedIn) {
  $("#signin").classList.toggle("hidden", signedIn);
  $("#vault").classList.toggle("hidden", !signedIn);
  $("#activity-card").classList.toggle("hidden", !signedIn);
}

// ---- sign-in, resume, commands --------------------------------------------

function siweMessage(address, nonce, chainId, delegateRes) {
  const now = new Date();
  const exp = new Date(now.getTime() + 24 * 3600 * 1000);
  return `${location.host} wants you to sign in with your Ethereum account:\n${address}\n\n` +
    `Sign in to your Spells vault.\n\n` +
    `URI: ${location.origin}\nVersion: 1\nChain ID: ${chainId}\nNonce: ${nonce}\n` +
    `Issued At: ${now.toISOString()}\nExpiration Time: ${exp.toISOString()}\n` +
    `Resources:\n- ${delegateRes}`;
}

async function signIn(useBurner) {
  $("#signin-error").textContent = "";
  try {
    const delegate = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const raw = await crypto.subtle.exportKey("raw", delegate.publicKey);
    const res = "urn:spells:delegate:p256:" + b64url(raw);
    let address, sign;
    if (useBurner) {
      let pk = localStorage.getItem("spells.burner");
      if (!pk) { pk = ethers.Wallet.createRandom().privateKey; localStorage.setItem("spells.burner", pk); }
      const w = new ethers.Wallet(pk);
      address = w.address;
      sign = (text) => w.signMessage(text);
    } else {
      if (!window.ethereum) throw new Error("no browser wallet found; use a burner key");
      const [acct] = await window.ethereum.request({ method: "eth_requestAccounts" });
      address = ethers.getAddress(acct);
      sign = (text) => window.ethereum.request({ method: "personal_sign", params: [ethers.hexlify(enc.encode(text)), acct] });
    }
    const text = siweMessage(address, S.challenge.nonce, S.challenge.chainId, res);
    const signature = await sign(text);
    S.delegate = delegate;
    S.newDelegate = delegate; // stored under the session id once ready names it
    S.version = 0; S.loaded = false;
    send({ type: "signin", message: text, signature });
  } catch (e) {
    $("#signin-error").textContent = e.message || String(e);
  }
}

async function signBody(body) {
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, S.delegate.privateKey, enc.encode(body));
  return b64url(sig);
}

async function resume() {
  const kp = await keyGet(S.session.id).catch(() => null);
  if (!kp) { S.session = null; saveSession(); return false; }
  S.delegate = kp;
  // With a mirror in memory, ask for what was missed; a fresh page gets a snapshot.
  const r = { vault: S.session.vault, session: S.session.id, nonce: S.challenge.nonce };
  if (S.loaded) r.since = S.version;
  const body = JSON.stringify(r);
  send({ type: "resume", body, sig: await signBody(body) });
  setStatus(true, "resuming…");
  return true;
}

async function command(op, args) {
  if (!S.session) return;
  const seq = ++S.session.seq;
  saveSession();
  const body = JSON.stringify({ vault: S.session.vault, session: S.session.id, seq, op, args });
  S.pending.set(seq, op);
  send({ type: "cmd", body, sig: await signBody(body) });
}

// ---- mirror of the vault -------------------------------------------------

function applySnapshot(st) {
  S.triggers = new Map(st.triggers.map((t) => [t.id, t]));
  S.intents = st.intents.slice().reverse();
  S.evaluations = st.evaluations.slice().reverse();
  S.version = st.version;
  S.loaded = true;
  saveSession();
  renderVault();
}

function applyDiff(d) {
  if (d.version !== S.version + 1) { console.warn("diff out of order; reconnecting", d.version, S.version); S.ws.close(); return; }
  for (const c of d.changes) {
    if (c.kind === "trigger") { if (c.op === "delete") S.triggers.delete(c.id); else S.triggers.set(c.id, c.data); }
    if (c.kind === "intent") S.intents.unshift({ ...c.data, fresh: true });
    if (c.kind === "evaluation") S.evaluations.unshift({ ...c.data, fresh: true });
  }
  S.intents.length = Math.min(S.intents.length, 100);
  S.evaluations.length = Math.min(S.evaluations.length, 100);
  S.version = d.version;
  saveSession();
  renderVault();
}

// ---- rendering -----------------------------------------------------------

function describe(c) {
  if (c.all) return "all(" + c.all.map(describe).join(", ") + ")";
  if (c.any) return "any(" + c.any.map(describe).join(", ") + ")";
  if (c.everyMs) return `every ${c.everyMs / 1000}s`;
  if (c.atMs) return `at ${new Date(c.atMs).toLocaleString()}`;
  return `${c.signal} ${c.op} ${fmtNum(c.threshold)}`;
}

function renderVault() {
  $("#version").textContent = `version ${S.version}`;
  const tb = $("#triggers tbody");
  tb.replaceChildren(...[...S.triggers.values()].map((t) => el("tr", { "data-id": t.id },
    el("td", {}, t.name),
    el("td", {}, describe(t.condition), el("span", { class: "muted" }, ` → ${t.action.kind}`)),
    el("td", {}, el("span", { class: "badge " + t.status }, t.status)),
    el("td", {}, String(t.fires) + (t.maxFires ? ` / ${t.maxFires}` : "")),
    el("td", {}, fmtTime(t.lastFiredAt)),
    el("td", {},
      t.status === "active" ? el("button", { class: "small", onclick: () => command("trigger.pause", { id: t.id }) }, "pause") : "",
      t.status === "paused" ? el("button", { class: "small", onclick: () => command("trigger.resume", { id: t.id }) }, "resume") : "",
      " ",
      el("button", { class: "small", onclick: () => command("trigger.delete", { id: t.id }) }, "delete")))));
  const name = (id) => S.triggers.get(id)?.name || id;
  $("#intents").replaceChildren(...S.intents.map((i) => el("li", { class: i.fresh ? "new" : "" },
    `${fmtTime(i.createdAt)} `, el("b", {}, i.action.kind), ` from “${name(i.triggerId)}” `, el("span", { class: "muted" }, i.idempotencyKey))));
  $("#evaluations").replaceChildren(...S.evaluations.map((e) => el("li", { class: e.fresh ? "new" : "" },
    `${fmtTime(e.at)} `, el("span", { class: "badge " + e.outcome }, e.outcome), ` “${name(e.triggerId)}” `,
    el("span", { class: "muted" }, `${e.cause}${e.value !== undefined ? " @ " + fmtNum(e.value) : ""} ${e.detail || ""}`))));
  for (const x of [...S.intents, ...S.evaluations]) delete x.fresh;
}

function addPoint(name, p) {
  const pts = S.signals.get(name) || [];
  pts.push(p);
  if (pts.length > 300) pts.shift();
  S.signals.set(name, pts);
  renderSignals();
}

function renderSignals() {
  const list = $("#signal-list");
  for (const [name, pts] of S.signals) {
    let card = list.querySelector(`[data-name="${CSS.escape(name)}"]`);
    if (!card) {
      card = el("div", { class: "signal", "data-name": name }, el("div", { class: "name" }, name),
        el("div", { class: "value" }), el("canvas", { width: 240, height: 40 }));
      list.append(card);
      const opt = el("option", { value: name }, name);
      $("#create select[name=signal]").append(opt);
    }
    const last = pts[pts.length - 1];
    card.querySelector(".value").textContent = last ? fmtNum(last.value) : "—";
    spark(card.querySelector("canvas"), pts);
  }
  const f = $("#create");
  if (!f.threshold.value && f.signal.value && S.signals.get(f.signal.value)?.length) {
    const pts = S.signals.get(f.signal.value);
    f.threshold.value = (pts[pts.length - 1].value * 0.999).toFixed(2);
  }
}

function spark(canvas, pts) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (pts.length < 2) return;
  const vs = pts.map((p) => p.value);
  const lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  ctx.strokeStyle = "#8b7cf6"; ctx.lineWidth = 1.5; ctx.beginPath();
  pts.forEach((p, i) => {
    const x = (i / (pts.length - 1)) * canvas.width;
    const y = canvas.height - ((p.value - lo) / span) * (canvas.height - 4) - 2;
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

// ---- wiring --------------------------------------------------------------

$("#btn-wallet").onclick = () => signIn(false);
$("#btn-burner").onclick = () => signIn(true);
if (!window.ethereum) $("#btn-wallet").classList.add("hidden");
$("#burner-hint").textContent = localStorage.getItem("spells.burner")
  ? "This browser holds a burner key; using it again opens the same vault." : "";

$("#create").kind.onchange = (e) => {
  const sig = e.target.value === "signal";
  $("#create .when-signal").classList.toggle("hidden", !sig);
  $("#create .when-every").classList.toggle("hidden", sig);
};
$("#create").signal.onchange = () => { $("#create").threshold.value = ""; renderSignals(); };
$("#create").onsubmit = (e) => {
  e.preventDefault();
  const f = e.target;
  const condition = f.kind.value === "signal"
    ? { signal: f.signal.value, op: f.op.value, threshold: Number(f.threshold.value) }
    : { everyMs: Number(f.every.value) * 1000 };
  const spec = { name: f.name.value, condition, action: { kind: f.action.value, params: {} } };
  if (f.cooldown.value) spec.cooldownMs = Number(f.cooldown.value) * 1000;
  if (f.maxFires.value) spec.maxFires = Number(f.maxFires.value);
  command("trigger.create", spec);
};

connect();
