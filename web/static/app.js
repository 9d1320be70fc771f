// The Spells dashboard: a client of the spells.v1 protocol (PROTOCOL.md),
// like any other. It signs in with a wallet (or a burner key kept in this
// browser), holds a per-session P-256 delegate key in WebCrypto (not
// extractable, kept in IndexedDB so a reload resumes the session), signs
// every command with it, and mirrors the vault from snapshot + diffs.
//
// Nothing a user does is lost: a command is signed once, kept in this
// tab's outbox (sessionStorage) until the vault answers it, sent as soon as
// the socket is live, and sent again after a reconnect unless the vault's
// ready frame says it already took it (lastSeq), so it arrives once.

const uPlot = window.uPlot; // vendor/uplot-1.6.32/uPlot.iife.min.js, loaded before this module

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
const fmtDateTime = (ms) => ms ? new Date(ms).toLocaleString() : "—";
const fmtNum = (v) => Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 });
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined && k !== false) e.append(k);
  return e;
}
const shortAddr = (a) => a ? `${a.slice(0, 6)}…${a.slice(-4)}` : "";

// ---- what an error means, in words ----------------------------------------

// Each code a user can meet: what happened, and what to do.
const WORDS = {
  rate_limited: ["Too many requests at once.", "Wait a few seconds and try again."],
  storage_full: ["The node's disk is full, so nothing was saved.", "Try again later; the node's operator has to make room."],
  unavailable: ["The node or your vault was busy or restarting, so this was not applied.", "Try again in a moment."],
  vault_moving: ["Your vault is moving to another node of the cluster.", "This page reconnects by itself in a moment."],
  node_unreachable: ["Your vault's node cannot be reached just now (it is restarting, or the cluster's directory is down).", "This page keeps trying."],
  vault_elsewhere: ["Your vault was just created on another node.", "Sign in again and you reach it there."],
  internal: ["The node hit an error (its log has the details), so this was not applied.", "Try again; tell the node's operator if it keeps happening."],
  invalid_trigger: ["The vault refused this trigger.", "Change what the message names and save again."],
  invalid_grant: ["The vault refused this grant.", "Sign it again; the message says what was wrong."],
  no_chain: ["This node runs without a chain.", "Grants and execution need a node with one."],
  key_unavailable: ["This node cannot unseal your vault's key.", "Ask the node's operator: it runs with another key-encryption key."],
  not_found: ["That trigger no longer exists.", "It was deleted, perhaps in another tab."],
  bad_command: ["The vault could not read this request.", "Reload the page; if it keeps happening, this dashboard has a bug."],
  bad_seq: ["The vault already took a newer command from this session.", "It was sent again with a fresh number."],
  session_unknown: ["This session no longer exists (it signed out, was revoked, or the vault was reset).", "Sign in again."],
  session_expired: ["Your session expired.", "Sign in again."],
  siwe_domain: ["This node does not accept sign-ins for this address bar's host.", "Open the dashboard at a host the node serves, or ask its operator to add this one."],
  siwe_chain: ["The node expects another chain id.", "Switch the wallet's network and try again."],
  siwe_expired: ["The sign-in message expired before it arrived.", "Try again."],
  siwe_issued_at: ["The sign-in message is dated in the future: this computer's clock is ahead.", "Fix the clock and try again."],
  nonce_expired: ["The sign-in took too long (or the node restarted meanwhile).", "Try again."],
  nonce_reused: ["This sign-in was already used.", "Try again."],
  nonce_unknown: ["The sign-in did not match this connection.", "Try again."],
  bad_signature: ["The signature did not come from this vault's owner.", "Sign with the account that owns the vault."],
  delegate_missing: ["The sign-in named no key for this browser.", "Reload the page and sign in again."],
  vault_quarantined: ["This vault's file could not be read, so the node set it aside.", "Ask the node's operator to restore it (the node's log names the file)."],
  vault_rolled_back: ["The vault is older than what this page had seen.", "What it holds now is shown."],
  not_signed_in: ["This page is not signed in.", "Sign in first."],
};

function explain(f) {
  const [what, todo] = WORDS[f.code] || ["Something went wrong.", "Try again."];
  const detail = ["invalid_trigger", "invalid_grant", "siwe_domain", "bad_signature", "bad_command"].includes(f.code) ? ` (${f.message})` : "";
  return `${what}${detail} ${todo} [${f.code}]`;
}

// ---- state ---------------------------------------------------------------

const S = {
  ws: null,
  challenge: null,
  conn: "connecting", // connecting | open | resuming | live | reconnecting
  session: JSON.parse(localStorage.getItem("spells.session") || "null"), // {vault, id, seq}
  delegate: null, // CryptoKeyPair
  account: null, // {sessionKey, keyCreatedAt}: the address the vault signs with
  portfolio: null, // the newest portfolio frame
  chain: null, // GET /v1/chain: the chain and its contracts, if the node has one
  grants: new Map(),
  alerts: {}, // the vault's alert settings (its webhook and its secret)
  alertLog: new Map(), // id -> alert, as its outbox keeps it
  triggers: new Map(),
  intents: [],
  evaluations: [],
  version: 0,
  loaded: false,
  signals: new Map(), // name -> [{value, at}]
  chartSignal: null,
  outbox: JSON.parse(sessionStorage.getItem("spells.outbox") || "[]"), // [{seq, op, label, body, sig, sent}]
  retry: 500,
  editing: null, // the id of the trigger the form edits
  olderDone: { intent: false, evaluation: false },
};

function saveSession() {
  if (S.session) {
    // The highest seq any tab of this session used, so tabs do not reuse one.
    const stored = JSON.parse(localStorage.getItem("spells.session") || "null");
    if (stored && stored.id === S.session.id) S.session.seq = Math.max(S.session.seq, stored.seq || 0);
  }
  localStorage.setItem("spells.session", JSON.stringify(S.session));
}
const saveOutbox = () => sessionStorage.setItem("spells.outbox", JSON.stringify(S.outbox));

// ---- connection ----------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/ws`, "spells.v1");
  S.ws = ws;
  // One message may hold several frames, one per line (PROTOCOL.md §1).
  ws.onmessage = (ev) => ev.data.split("\n").forEach((line) => onFrame(JSON.parse(line)));
  ws.onclose = (ev) => {
    if (S.ws !== ws) return;
    if (ev.code === 4003) {
      signedOut(S.signingOut ? "Signed out." : "This session has ended: it was signed out in another tab, or every session was revoked. Sign in again.",
        S.signingOut);
      S.signingOut = false;
      S.retry = 250; // nothing is wrong with the node: a new socket at once
    }
    // The vault moved to another node (4005), or this node lost its link
    // to the vault's node (4004): reconnect at once and resume.
    if (ev.code === 4004 || ev.code === 4005) S.retry = 250;
    setConn(S.session ? "reconnecting" : "connecting", ev);
    setTimeout(connect, S.retry);
    S.retry = Math.min(S.retry * 2, 8000);
  };
  ws.onopen = () => { S.retry = 500; };
}

function setConn(state, closeEvent) {
  S.conn = state;
  const s = $("#status");
  const texts = {
    connecting: "connecting…", open: "connected: sign in", resuming: "resuming your session…", live: "live",
    reconnecting: `disconnected${closeEvent && closeEvent.code ? ` (${closeEvent.code})` : ""}: reconnecting…`,
  };
  s.textContent = texts[state];
  s.className = "status " + (state === "live" || state === "open" ? "on" : state === "reconnecting" ? "off" : "wait");
  for (const b of ["#btn-burner", "#btn-wallet"]) $(b).disabled = state !== "open";
  renderPending();
}

const send = (frame) => S.ws.send(JSON.stringify(frame));

async function onFrame(f) {
  switch (f.type) {
    case "challenge":
      S.challenge = f;
      if (S.session && await resume()) return;
      setConn("open");
      return;
    case "ready": return onReady(f);
    case "snapshot": applySnapshot(f.state); return;
    case "diff": applyDiff(f); return;
    case "ack": return onAnswer(f, null);
    case "error": return f.seq !== undefined ? onAnswer(f, f) : onError(f);
    case "signals": for (const [n, pts] of Object.entries(f.series)) S.signals.set(n, pts); renderSignals(); return;
    case "signal": addPoint(f.name, { value: f.value, at: f.at }); return;
    case "portfolio": S.portfolio = f; renderPortfolio(); return;
    case "restore": return onRestore(f);
  }
}

// fmtUnits writes an amount in smallest units (a decimal string) as whole
// units of 18 decimals, to at most 4 places.
function fmtUnits(s) {
  const n = BigInt(s || "0");
  const whole = n / 10n ** 18n;
  const frac = Number((n % 10n ** 18n) / 10n ** 14n) / 10000;
  return fmtNum(Number(whole) + frac);
}

// The owner's balances and the session key's gas money, as the chain
// holds them at the newest block (portfolio frames, sent when they change).
function renderPortfolio() {
  const p = S.portfolio;
  $("#balances").classList.toggle("hidden", !p || !S.session);
  if (!p) return;
  // In USD too where the node has a USD feed for the token (ETH/USD for
  // ETH and dETH).
  const usd = (sym, v) => {
    const px = /USD/.test(sym) ? null : usdOf(sym);
    return px === null ? "" : ` (${fmtUSD(Number(BigInt(v || "0")) / 1e18 * px)})`;
  };
  const toks = Object.entries(p.account.tokens || {}).map(([sym, v]) => `${fmtUnits(v)} ${sym}${usd(sym, v)}`);
  $("#balances-account").textContent = [...toks, `${fmtUnits(p.account.native)} ETH${usd("ETH", p.account.native)}`].join(" · ");
  $("#balances-key").textContent = `The session key ${shortAddr(p.sessionKey.address)} holds ${fmtUnits(p.sessionKey.native)} ETH for gas.`;
  $("#balances-block").textContent = `block ${p.block}`;
}

function onReady(f) {
  const seq = Math.max(f.lastSeq, S.session && S.session.id === f.session ? S.session.seq : 0);
  S.session = { vault: f.vault, id: f.session, seq };
  saveSession();
  if (S.newDelegate) { keyPut(f.session, S.newDelegate); S.newDelegate = null; }
  setConn("live");
  $("#who").textContent = f.vault;
  $("#who").title = "your vault: " + f.vault;
  show(true);
  // What the vault took already (seq ≤ lastSeq) arrived; the rest goes now.
  const done = S.outbox.filter((c) => c.seq <= f.lastSeq);
  S.outbox = S.outbox.filter((c) => c.seq > f.lastSeq);
  for (const c of S.outbox) c.sent = false; // what the last socket took, this one sends
  for (const c of done) toast(`${c.label}: done`);
  saveOutbox();
  flushOutbox();
}

// A resume refused for a passing reason (the vault moving, its node
// restarting) is tried again on the same socket, whose nonce it did not use.
const RESUME_LATER = ["vault_moving", "node_unreachable", "unavailable", "rate_limited"];

function onError(f) {
  if (S.conn === "resuming" && S.session && RESUME_LATER.includes(f.code)) {
    $("#status").textContent = explain(f);
    const ws = S.ws;
    setTimeout(() => { if (S.ws === ws && ws.readyState === WebSocket.OPEN) resume(); }, S.retry);
    S.retry = Math.min(S.retry * 2, 8000);
    return;
  }
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
      "replaced or deleted: ask the node's operator to restore it (the node's log names the file). (vault_quarantined)");
    setConn("open");
    show(false);
    return;
  }
  if (!S.loaded && S.session && ["session_unknown", "session_expired", "nonce_reused", "bad_cmd_signature", "wrong_vault"].includes(f.code)) {
    // The stored session cannot be resumed: forget it and sign in again.
    signedOut(explain(f));
    setConn("open");
    return;
  }
  $("#signin-error").textContent = explain(f);
}

function signedOut(why, fine) {
  S.session = null;
  S.portfolio = null;
  // Nothing of the vault stays on the page: its triggers (and their
  // threshold lines), grants, activity and key.
  S.triggers = new Map();
  S.grants = new Map();
  S.alerts = {};
  S.alertLog = new Map();
  S.intents = [];
  S.evaluations = [];
  S.account = null;
  S.editing = null;
  renderPortfolio();
  renderGrants();
  renderSignals();
  S.outbox = [];
  saveSession();
  saveOutbox();
  S.loaded = false;
  show(false);
  const m = $("#signin-error");
  m.textContent = why || "";
  m.className = fine ? "hint" : "error";
}

function show(signedIn) {
  $("#signin").classList.toggle("hidden", signedIn);
  $("#vault").classList.toggle("hidden", !signedIn);
  $("#activity-card").classList.toggle("hidden", !signedIn);
  $("#alerts-card").classList.toggle("hidden", !signedIn);
  $("#account").classList.toggle("hidden", !signedIn);
  if (!signedIn) $("#who").textContent = "";
  renderBurner();
}

// onRestore tells what a restore from the backup did to the triggers (the
// diffs that did it came first), or would do, or why it could not run.
function onRestore(f) {
  if (f.error) {
    notice(`The restore did not run: ${f.error.message} (${f.error.code})`);
    return;
  }
  const names = (l) => l.map((t) => `"${t.name}"`).join(", ");
  const parts = [];
  if (f.added.length) parts.push(`${f.dry ? "would add back" : "added back"} ${names(f.added)}`);
  if (f.removed.length) parts.push(`${f.dry ? "would remove" : "removed"} ${names(f.removed)}`);
  if (f.changed.length) parts.push(`${f.dry ? "would change" : "changed"} ${names(f.changed)}`);
  const what = parts.length ? parts.join("; ") : "nothing to change";
  const when = new Date(f.at).toLocaleString();
  notice(`${f.dry ? "A restore" : "Restored"} to version ${f.version} (${when}): ${what}.` +
    (f.notes && f.notes.length ? " " + f.notes.join(" ") : ""), true);
}

// notice shows a message that stays until the page is reloaded: what the
// vault or the node says about the user's data, not about one click.
function notice(text, info) {
  const n = $("#notice");
  n.textContent = text;
  n.classList.toggle("info", !!info);
  n.classList.remove("hidden");
}

let toastTimer;
function toast(text) {
  const e = $("#cmd-error");
  e.textContent = "";
  const p = $("#pending");
  p.dataset.toast = text;
  renderPending();
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { delete p.dataset.toast; renderPending(); }, 4000);
}

// ---- sign-in, resume, sign-out --------------------------------------------

function siweMessage(address, nonce, chainId, resource, statement) {
  const now = new Date();
  const exp = new Date(now.getTime() + 24 * 3600 * 1000);
  return `${location.host} wants you to sign in with your Ethereum account:\n${address}\n\n` +
    `${statement}\n\n` +
    `URI: ${location.origin}\nVersion: 1\nChain ID: ${chainId}\nNonce: ${nonce}\n` +
    `Issued At: ${now.toISOString()}\nExpiration Time: ${exp.toISOString()}\n` +
    `Resources:\n- ${resource}`;
}

function burnerKey() { return localStorage.getItem("spells.burner"); }

// signer returns the address and a personal_sign function of the burner
// key or the browser wallet.
async function signer(useBurner) {
  if (useBurner) {
    let pk = burnerKey();
    if (!pk) { pk = ethers.Wallet.createRandom().privateKey; localStorage.setItem("spells.burner", pk); }
    const w = new ethers.Wallet(pk);
    return { address: w.address, sign: (text) => w.signMessage(text), burner: true };
  }
  if (!window.ethereum) throw new Error("no browser wallet found; use a burner key");
  const [acct] = await window.ethereum.request({ method: "eth_requestAccounts" });
  return {
    address: ethers.getAddress(acct), burner: false,
    sign: (text) => window.ethereum.request({ method: "personal_sign", params: [ethers.hexlify(enc.encode(text)), acct] }),
  };
}

async function signIn(useBurner) {
  $("#signin-error").textContent = "";
  $("#signin-error").className = "error";
  try {
    const delegate = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const raw = await crypto.subtle.exportKey("raw", delegate.publicKey);
    const who = await signer(useBurner);
    localStorage.setItem("spells.signer", who.burner ? "burner" : "wallet");
    const text = siweMessage(who.address, S.challenge.nonce, S.challenge.chainId, "urn:spells:delegate:p256:" + b64url(raw),
      "Sign in to your Spells vault.");
    const signature = await who.sign(text);
    S.delegate = delegate;
    S.newDelegate = delegate; // stored under the session id once ready names it
    S.version = 0; S.loaded = false;
    send({ type: "signin", message: text, signature });
    renderBurner();
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
  if (!kp) { signedOut(); return false; }
  S.delegate = kp;
  // With a mirror in memory, ask for what was missed; a fresh page gets a snapshot.
  const r = { vault: S.session.vault, session: S.session.id, nonce: S.challenge.nonce };
  if (S.loaded) r.since = S.version;
  const body = JSON.stringify(r);
  send({ type: "resume", body, sig: await signBody(body) });
  setConn("resuming");
  return true;
}

// Sign out: the session ends itself (session.end); the vault closes every
// socket of it with 4003, which ends the page's session (connect).
function signOut() {
  S.signingOut = true;
  command("session.end", {}, "Sign out");
}

// Sign out everywhere: the owner's wallet (or burner key) signs a revoke,
// sent on a socket of its own (it carries that socket's nonce).
async function signOutEverywhere() {
  $("#cmd-error").textContent = "";
  S.signingOut = true; // this tab's own session ends with the others
  try {
    const who = await signer(localStorage.getItem("spells.signer") !== "wallet");
    if (S.session && who.address.toLowerCase() !== S.session.vault.toLowerCase()) {
      throw new Error("the signing account is not this vault's owner");
    }
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/v1/ws`, "spells.v1");
    const answer = await new Promise((resolve, reject) => {
      ws.onerror = () => reject(new Error("could not reach the node"));
      ws.onmessage = async (ev) => {
        for (const f of ev.data.split("\n").map((l) => JSON.parse(l))) {
          if (f.type === "challenge") {
            const text = siweMessage(who.address, f.nonce, f.chainId, "urn:spells:revoke:sessions",
              "Sign out of every Spells session of this vault.");
            ws.send(JSON.stringify({ type: "revoke", message: text, signature: await who.sign(text) }));
          } else if (f.type === "revoked") resolve(f);
          else if (f.type === "error") reject(new Error(explain(f)));
        }
      };
    });
    ws.close();
    signedOut("", true);
    notice(`Signed out everywhere: ${answer.sessions} session${answer.sessions === 1 ? "" : "s"} of this vault ended.`, true);
  } catch (e) {
    S.signingOut = false;
    $("#cmd-error").textContent = e.message || String(e);
  }
}

// ---- commands and the outbox -----------------------------------------------

// command signs op with args as the session's next command and sends it
// when the socket is live (at once, or after the reconnect).
async function command(op, args, label) {
  if (!S.session || !S.delegate) return;
  saveSession(); // picks up a higher seq another tab used
  const seq = ++S.session.seq;
  saveSession();
  const body = JSON.stringify({ vault: S.session.vault, session: S.session.id, seq, op, args });
  const c = { seq, op, label, body, sig: await signBody(body), sent: false, args };
  S.outbox.push(c);
  saveOutbox();
  flushOutbox();
  if (S.loaded) renderVault(); // its buttons show it pending
}

function flushOutbox() {
  if (S.conn !== "live" || S.ws.readyState !== WebSocket.OPEN) { renderPending(); return; }
  for (const c of S.outbox) {
    if (!c.sent) { send({ type: "cmd", body: c.body, sig: c.sig }); c.sent = true; }
  }
  saveOutbox();
  renderPending();
}

async function onAnswer(f, err) {
  const i = S.outbox.findIndex((c) => c.seq === f.seq);
  const c = i >= 0 ? S.outbox[i] : null;
  if (i >= 0) S.outbox.splice(i, 1);
  if (err && err.code === "bad_seq" && c) {
    // Another tab of this session used the number: sign it again.
    const m = /last accepted (\d+)/.exec(err.message);
    if (m) S.session.seq = Math.max(S.session.seq, Number(m[1]));
    saveOutbox();
    return command(c.op, c.args, c.label);
  }
  saveOutbox();
  if (err) $("#cmd-error").textContent = `${c ? c.label + ": " : ""}${explain(err)}`;
  else if (c) {
    if (c.op === "activity.list") return onOlder(c, f.result);
    toast(`${c.label}: done`);
    $("#cmd-error").textContent = "";
  }
  renderPending();
}

function renderPending() {
  const p = $("#pending");
  const waiting = S.outbox.filter((c) => c.op !== "activity.list");
  const items = waiting.map((c) => el("li", {}, `${c.label}: ${S.conn === "live" ? "sent, waiting for the vault…" : "waiting for the connection; it will be sent when the node is back"}`));
  if (p.dataset.toast) items.push(el("li", { class: "done" }, p.dataset.toast));
  p.replaceChildren(el("ul", {}, ...items));
  p.classList.toggle("hidden", items.length === 0);
  $("#btn-create").textContent = S.editing ? "Save changes" : S.conn === "live" ? "Create" : "Create (will be sent when reconnected)";
}

// ---- mirror of the vault -------------------------------------------------

function applySnapshot(st) {
  S.triggers = new Map(st.triggers.map((t) => [t.id, t]));
  S.intents = st.intents.slice().reverse();
  S.evaluations = st.evaluations.slice().reverse();
  S.version = st.version;
  S.account = st.account || null;
  S.grants = new Map((st.grants || []).map((g) => [g.id, g]));
  S.alerts = st.alerts || {};
  S.alertLog = new Map((st.alertLog || []).map((a) => [a.id, a]));
  fillAlertsForm();
  S.loaded = true;
  S.olderDone = { intent: false, evaluation: false };
  renderVault();
}

function applyDiff(d) {
  if (d.version !== S.version + 1) { console.warn("diff out of order; reconnecting", d.version, S.version); S.ws.close(); return; }
  for (const c of d.changes) {
    if (c.kind === "trigger") { if (c.op === "delete") S.triggers.delete(c.id); else S.triggers.set(c.id, c.data); }
    if (c.kind === "intent") {
      const i = S.intents.findIndex((x) => x.id === c.id);
      if (i >= 0) S.intents[i] = { ...c.data, fresh: true }; else S.intents.unshift({ ...c.data, fresh: true });
    }
    if (c.kind === "grant") S.grants.set(c.id, c.data);
    if (c.kind === "evaluation") S.evaluations.unshift({ ...c.data, fresh: true });
    if (c.kind === "account") S.account = c.data;
    if (c.kind === "alerts") { S.alerts = c.data; fillAlertsForm(); }
    if (c.kind === "alert") {
      if (!S.alertLog.has(c.id)) browserNotify(c.data);
      S.alertLog.set(c.id, c.data);
    }
  }
  S.version = d.version;
  renderVault();
}

// onOlder adds a page of older entries (activity.list) below the others.
function onOlder(c, result) {
  const kind = c.args.kind;
  const rows = kind === "intent" ? result.intents : result.evaluations;
  const list = kind === "intent" ? S.intents : S.evaluations;
  const seen = new Set(list.map((x) => String(x.id)));
  for (const r of rows) if (!seen.has(String(r.id))) list.push(r);
  if (rows.length < c.args.limit) S.olderDone[kind] = true;
  renderActivity();
}

function loadOlder(kind) {
  const list = kind === "intent" ? S.intents : S.evaluations;
  const args = { kind, limit: 50 };
  if (list.length) args.before = String(list[list.length - 1].id);
  const tr = $("#filter-trigger").value;
  if (tr) args.trigger = tr;
  command("activity.list", args, `Load older ${kind === "intent" ? "intents" : "entries"}`);
}

// ---- rendering -----------------------------------------------------------

const UNITS = [[86400000, "d"], [3600000, "h"], [60000, "min"], [1000, "s"]];
function fmtDuration(ms) {
  for (const [u, name] of UNITS) if (ms >= u && ms % u === 0) return `${ms / u} ${name}`;
  return `${ms / 1000} s`;
}

function describe(c) {
  if (c.all) return "all of (" + c.all.map(describe).join("; ") + ")";
  if (c.any) return "any of (" + c.any.map(describe).join("; ") + ")";
  if (c.everyMs) return `every ${fmtDuration(c.everyMs)}`;
  if (c.atMs) return `once at ${fmtDateTime(c.atMs)}`;
  if (c.move) return `${c.move.of || c.signal} ${c.op === "below" ? "falls" : "rises"} ${fmtNum(c.move.pct)} % within ${fmtDuration(c.move.windowMs)}`;
  if (c.event) return describeEvent(c.event);
  if (c.read && c.read.balance) return `my ${c.read.balance === "native" ? "ETH" : c.read.balance} balance ${c.op} ${fmtNum(c.threshold)}`;
  if (c.read) return `${shortAddr(c.read.contract)}.${(c.read.function || "").split(" returns")[0]} ${c.op} ${fmtNum(c.threshold)}`;
  return `${c.signal} ${c.op} ${fmtNum(c.threshold)}`;
}

// describeEvent says an event condition in words: the event, its
// contract, and each indexed argument it is filtered on.
function describeEvent(e) {
  const m = /^\s*(?:event\s+)?(\w+)\s*\((.*)\)\s*$/.exec(e.signature || "");
  if (!m) return `an event of ${shortAddr(e.contract)}`;
  const indexed = m[2].split(",").map((p) => p.trim().split(/\s+/)).filter((f) => f[1] === "indexed");
  const where = (e.topics || []).map((t, i) => t ? `${indexed[i]?.[2] || `topic ${i + 1}`} = ${/^0x[0-9a-fA-F]{40}$/.test(t) ? shortAddr(t) : t}` : null).filter(Boolean);
  return `${m[1]} on ${shortAddr(e.contract)}${where.length ? " where " + where.join(", ") : ""}`;
}

const nameOf = (id) => S.triggers.get(id)?.name || id;

// onChainBounds says what the chain lets a trigger's session key do: its
// own grant's pinned calls, fires, expiry and price condition, or, without
// one, that it runs under the vault's standing grants.
function onChainBounds(t) {
  const g = t.grant && S.grants.get(t.grant);
  if (!g) return "on-chain: under your standing grants (amounts bounded, not recipients or prices)";
  if (g.status !== "active") return `on-chain: its grant is ${g.status}; it cannot run until you sign a new one (edit and save)`;
  const r = (g.delegations[0] || {}).rules || {};
  const parts = [`exactly its ${r.batch ? r.batch.length : 0} signed call${r.batch && r.batch.length === 1 ? "" : "s"}`];
  if (r.maxCalls) parts.push(`at most ${r.maxCalls} time${r.maxCalls === 1 ? "" : "s"}`);
  if (r.notAfter) parts.push(`until ${fmtDateTime(r.notAfter * 1000)}`);
  if (r.feed) {
    const f = (S.chain.feeds || []).find((x) => x.address.toLowerCase() === r.feed.feed.toLowerCase());
    const th = f ? fmtNum(Number(r.feed.threshold) / 10 ** f.decimals) : r.feed.threshold;
    parts.push(`only while the chain's ${f ? f.signal : "price"} feed is ${r.feed.above ? "above" : "below"} ${th}`);
  }
  return "on-chain: " + parts.join(", ");
}

// ---- alerts -----------------------------------------------------------------

function fillAlertsForm() {
  const f = $("#alerts-form");
  const a = S.alerts || {};
  const w = a.webhook, mail = a.email, chat = a.telegram;
  f.elements.url.value = w ? w.url : "";
  f.elements.email.value = mail ? mail.to : "";
  f.elements.chat.value = chat ? chat.chatId : "";
  const any = w || mail || chat || (a.push || []).length;
  f.elements.intentFailed.checked = any ? !!(a.on && a.on.intentFailed) : true;
  f.elements.grants.checked = any ? !!(a.on && a.on.grants) : true;
  $("#alerts-secret").classList.toggle("hidden", !w);
  $("#alerts-secret-value").textContent = w ? w.secret : "";
  const waiting = mail && !mail.confirmed;
  $("#confirm-form").classList.toggle("hidden", !waiting);
  $("#confirm-to").textContent = waiting ? mail.to : "";
  const pushes = (a.push || []).length;
  const on = [w ? "webhook" : "", chat ? "Telegram" : "", mail && mail.confirmed ? "mail" : "", pushes ? `push to ${pushes} browser${pushes === 1 ? "" : "s"}` : ""].filter(Boolean);
  $("#alerts-state").textContent = on.length ? `sent by ${on.join(", ")}` + (waiting ? "; mail waits for its code" : "")
    : waiting ? "mail waits for its code" : "no channel yet: notify triggers need one";
}

$("#alerts-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = e.target;
  const url = f.elements.url.value.trim(), to = f.elements.email.value.trim(), chat = f.elements.chat.value.trim();
  const m = $("#alerts-msg");
  const bad = url && !/^https?:\/\/[^\s/]+/.test(url) ? "the webhook URL must start with https:// (or http://) and name a host"
    : to && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(to) ? "the mail address must look like you@example.com"
    : chat && !/^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$/.test(chat) ? "a Telegram chat id is a number (@userinfobot tells you yours) or a channel's @name" : "";
  m.textContent = bad;
  m.className = bad ? "msg error" : "msg";
  if (bad) return;
  const args = { webhook: url ? { url } : null, on: { intentFailed: f.elements.intentFailed.checked, grants: f.elements.grants.checked } };
  if (to) args.email = { to };
  if (chat) args.telegram = { chatId: chat };
  if (S.alerts.push && S.alerts.push.length) args.push = S.alerts.push.map(({ endpoint, keys }) => ({ endpoint, keys }));
  command("alerts.set", args, "Save the alert channels");
});

// currentAlerts is alerts.set's args for the settings as they are (a
// change to one channel keeps the others).
function currentAlerts() {
  const a = S.alerts || {};
  const args = { webhook: a.webhook ? { url: a.webhook.url } : null, on: a.on || {} };
  if (a.email) args.email = { to: a.email.to };
  if (a.telegram) args.telegram = { chatId: a.telegram.chatId };
  args.push = (a.push || []).map(({ endpoint, keys }) => ({ endpoint, keys }));
  return args;
}

// subscribePush asks this browser's push service for a subscription to
// the node's push key, and adds it to the vault's channels: alerts then
// reach this browser while no page is open.
async function subscribePush() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return "this browser has no Web Push";
  try {
    const reg = await navigator.serviceWorker.register("sw.js");
    const key = (await (await fetch("/v1/push/key")).json()).publicKey;
    const raw = Uint8Array.from(atob(key.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: raw });
    const args = currentAlerts();
    const s = sub.toJSON();
    if (!args.push.some((p) => p.endpoint === s.endpoint)) args.push.push({ endpoint: s.endpoint, keys: s.keys });
    command("alerts.set", args, "Send alerts to this browser");
    return "";
  } catch (err) {
    return `this browser could not subscribe to push (${err.message || err}); alerts still show here while the page is open`;
  }
}

$("#confirm-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = e.target.elements.code.value.trim();
  if (!/^\d{6}$/.test(code)) { $("#alerts-msg").textContent = "the code is the 6 digits in the mail"; $("#alerts-msg").className = "msg error"; return; }
  e.target.elements.code.value = "";
  command("alerts.confirm", { code }, "Confirm the mail address");
});

// browserNotify shows a new alert as the browser's own notification while
// this page is open, if the owner allowed it.
const notified = new Set(); // events shown: one notification per event, whatever its channels
function browserNotify(a) {
  if (!("Notification" in window) || Notification.permission !== "granted" || notified.has(a.event || a.id)) return;
  notified.add(a.event || a.id);
  try { new Notification(`Spells: ${a.title}`, { body: a.detail || a.kind, tag: a.id }); } catch { /* a browser that allows them only from a service worker */ }
}

$("#btn-notify-browser").addEventListener("click", async () => {
  if (!("Notification" in window)) { $("#alerts-msg").textContent = "this browser has no notifications"; return; }
  const p = await Notification.requestPermission();
  const m = $("#alerts-msg");
  if (p !== "granted") { m.textContent = "the browser did not allow notifications"; m.className = "msg error"; return; }
  const why = await subscribePush();
  m.textContent = why || "alerts will show in this browser, with the page open or not";
  m.className = why ? "msg warn" : "msg";
});

function renderAlerts() {
  const log = [...S.alertLog.values()].sort((a, b) => b.at - a.at || (b.id < a.id ? -1 : 1));
  $("#alert-log").replaceChildren(...log.map((a) => el("li", { "data-status": a.status, "data-id": a.id },
    el("span", { class: "muted" }, fmtTime(a.at) + " "),
    el("span", { class: "badge " + a.status }, a.status), " ",
    a.title, a.detail ? el("span", { class: "muted" }, ` — ${a.detail}`) : null,
    a.channel ? el("span", { class: "muted" }, ` (${a.channel === "email" ? "mail" : a.channel === "telegram" ? "Telegram" : a.channel.startsWith("push:") ? "push" : "webhook"})`) : null,
    el("div", { class: "muted small" }, a.status === "delivered" ? `delivered ${fmtTime(a.deliveredAt)}${a.attempts > 1 ? ` after ${a.attempts} tries` : ""}`
      : a.lastError ? `${a.attempts} ${a.attempts === 1 ? "try" : "tries"}: ${a.lastError}` : "sending…"))));
  $("#no-alerts").classList.toggle("hidden", log.length > 0);
}

function renderVault() {
  renderAlerts();
  $("#version").textContent = `vault version ${S.version}`;
  const key = S.account ? S.account.sessionKey : "";
  $("#session-key").textContent = key ? `session key ${shortAddr(key)}` : "";
  $("#session-key").title = key ? `the key this vault signs its transactions with: ${key} (it never leaves the vault)` : "";
  renderGrants();
  const tb = $("#triggers tbody");
  const pend = (id, op) => S.outbox.some((c) => c.args && c.args.id === id && c.op === op);
  tb.replaceChildren(...[...S.triggers.values()].map((t) => el("tr", { "data-id": t.id, class: S.editing === t.id ? "editing" : "" },
    el("td", { class: "name", title: t.name, "data-label": "name" }, t.name),
    el("td", { class: "cond", "data-label": "when" }, describe(t.condition), el("span", { class: "muted" }, ` → ${t.action.kind}`),
      t.cooldownMs ? el("span", { class: "muted" }, `, cooldown ${fmtDuration(t.cooldownMs)}`) : null,
      t.expiresAt ? el("span", { class: "muted" }, `, expires ${fmtDateTime(t.expiresAt)}`) : null,
      t.action.kind !== "notify" && S.chain ? el("div", { class: "bounds muted" }, onChainBounds(t)) : null),
    el("td", { "data-label": "status" }, el("span", { class: "badge " + t.status }, t.status)),
    el("td", { "data-label": "fires" }, String(t.fires || 0) + (t.maxFires ? ` of ${t.maxFires}` : " (no limit)")),
    el("td", { "data-label": "last fired" }, fmtTime(t.lastFiredAt)),
    el("td", { class: "actions" },
      el("button", { class: "small secondary", onclick: () => editTrigger(t.id) }, "edit"),
      t.status === "active" ? el("button", { class: "small secondary", disabled: pend(t.id, "trigger.pause"), onclick: () => command("trigger.pause", { id: t.id }, `Pause “${t.name}”`) }, pend(t.id, "trigger.pause") ? "pausing…" : "pause") : null,
      t.status === "paused" ? el("button", { class: "small secondary", disabled: pend(t.id, "trigger.resume"), onclick: () => command("trigger.resume", { id: t.id }, `Resume “${t.name}”`) }, pend(t.id, "trigger.resume") ? "resuming…" : "resume") : null,
      el("button", { class: "small danger", disabled: pend(t.id, "trigger.delete"), onclick: () => { if (confirm(`Delete “${t.name}”?`)) command("trigger.delete", { id: t.id }, `Delete “${t.name}”`); } }, pend(t.id, "trigger.delete") ? "deleting…" : "delete")))));
  $("#no-triggers").classList.toggle("hidden", S.triggers.size > 0);
  const sel = $("#filter-trigger");
  const cur = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "every trigger"),
    ...[...S.triggers.values()].map((t) => el("option", { value: t.id }, t.name)));
  sel.value = S.triggers.has(cur) ? cur : "";
  renderActivity();
  renderSignals();
  renderPending();
}

const COMMAND_WORDS = { created: "You created", edited: "You edited", paused: "You paused", resumed: "You resumed", deleted: "You deleted" };

// ---- money ------------------------------------------------------------------

// usdOf is a token's price in USD where the node has a USD feed for it
// (ETH/USD for ETH and dETH; 1 for a token named USD-something), else null.
function usdOf(symbol) {
  if (/USD/.test(symbol)) return 1;
  if (symbol === "ETH" || symbol === "dETH" || symbol === "WETH") {
    const pts = S.signals.get("ETH/USD") || [];
    return pts.length ? pts[pts.length - 1].value : null;
  }
  return null;
}

const fmtUSD = (n) => "$" + n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function fmtMoney(amount, symbol) {
  const n = Number(amount), usd = usdOf(symbol);
  return `${fmtNum(n)} ${symbol}` + (usd !== null && !/USD/.test(symbol) ? ` (${fmtUSD(n * usd)})` : "");
}

// intentMoney says what an intent paid, received, at what price against
// the value its firing saw, and its gas.
function intentMoney(i) {
  const tx = i.tx;
  if (!tx || (!tx.moved && !tx.fee)) return null;
  const moved = tx.moved || [], paid = moved.filter((m) => !m.in), got = moved.filter((m) => m.in);
  const parts = [];
  if (paid.length) parts.push("paid " + paid.map((m) => fmtMoney(m.amount, m.token)).join(", "));
  if (got.length) parts.push("received " + got.map((m) => fmtMoney(m.amount, m.token)).join(", "));
  if (i.action.kind === "swap" && paid.length === 1 && got.length === 1) {
    // The price in the USD-like token per the other, as the feed quotes it.
    const usdPaid = /USD/.test(paid[0].token), usd = usdPaid ? paid[0] : got[0], other = usdPaid ? got[0] : paid[0];
    const price = Number(usd.amount) / Number(other.amount);
    let vs = "";
    if (i.firedValue !== undefined && i.firedValue > 0) {
      const pct = (price / i.firedValue - 1) * 100, worse = usdPaid ? pct > 0 : pct < 0;
      vs = ` (fired at ${fmtNum(i.firedValue)}: ${fmtNum(Math.abs(pct))} % ${Math.abs(pct) < 0.005 ? "off" : worse ? "worse" : "better"})`;
    }
    parts.push(`at ${fmtNum(price)} ${usd.token}/${other.token}${vs}`);
  }
  if (tx.fee) {
    const eth = Number(BigInt(tx.fee)) / 1e18, usd = usdOf("ETH");
    parts.push(`gas ${fmtNum(eth)} ETH${usd !== null ? ` (${fmtUSD(eth * usd)})` : ""}`);
  }
  return el("div", { class: "money" }, parts.join(" · "));
}

// gasToday is what today's intents paid in gas.
function gasToday() {
  const start = new Date(); start.setHours(0, 0, 0, 0);
  let wei = 0n;
  for (const i of S.intents) if (i.tx && i.tx.fee && i.createdAt >= start.getTime()) wei += BigInt(i.tx.fee);
  if (wei === 0n) return "";
  const eth = Number(wei) / 1e18, usd = usdOf("ETH");
  return `gas today ${fmtNum(eth)} ETH${usd !== null ? ` (${fmtUSD(eth * usd)})` : ""}`;
}

// showTx opens the node's view of a transaction: what a block explorer
// would show of it.
async function showTx(hash) {
  const d = $("#tx-view"), body = $("#tx-view-body");
  body.replaceChildren(el("p", { class: "muted" }, "reading " + hash + "…"));
  if (!d.open) d.showModal();
  try {
    const res = await fetch(`/v1/chain/tx/${hash}`);
    const v = await res.json();
    if (!res.ok) { body.replaceChildren(el("p", { class: "error" }, v.error ? v.error.message : `the node answered ${res.status}`)); return; }
    const name = (a, n) => n ? `${n} (${shortAddr(a)})` : a;
    const args = (o) => Object.entries(o || {}).map(([k, x]) => `${k}: ${x}`).join(", ");
    const call = (c) => el("li", {}, el("b", {}, c.method), ` on ${name(c.to, c.toName)}`, c.value ? ` with ${fmtUnits(c.value)} ETH` : "",
      c.args ? el("div", { class: "muted args" }, args(c.args)) : null,
      c.calls && c.calls.length ? el("ul", {}, ...c.calls.map(call)) : null);
    const eth = v.fee ? Number(BigInt(v.fee)) / 1e18 : 0, usd = usdOf("ETH");
    body.replaceChildren(el("dl", { class: "tx" },
      el("dt", {}, "hash"), el("dd", {}, el("code", {}, v.hash), el("button", { type: "button", class: "small secondary copy", onclick: () => copyText(v.hash) }, "copy")),
      el("dt", {}, "status"), el("dd", {}, el("span", { class: "badge " + (v.status === "success" ? "delivered" : v.status === "reverted" ? "failed" : "pending") }, v.status)),
      el("dt", {}, "block"), el("dd", {}, v.block ? `${v.block}${v.time ? ", " + fmtDateTime(v.time * 1000) : ""}` : "—"),
      el("dt", {}, "from"), el("dd", {}, el("code", {}, v.from)),
      el("dt", {}, "to"), el("dd", {}, el("code", {}, name(v.to, v.toName))),
      el("dt", {}, "fee"), el("dd", {}, v.fee ? `${fmtNum(eth)} ETH${usd !== null ? ` (${fmtUSD(eth * usd)})` : ""} · ${v.gasUsed} gas at ${fmtNum(Number(v.effectiveGasPrice) / 1e9)} gwei` : "—")),
      el("h3", {}, "Call"), v.call ? el("ul", { class: "calls" }, call(v.call)) : el("p", { class: "muted" }, "none"),
      el("h3", {}, `Logs (${v.logs.length})`), el("ul", { class: "logs" }, ...v.logs.map((l) => el("li", {}, el("b", {}, l.event), ` from ${name(l.address, l.name)}`,
        l.args ? el("div", { class: "muted args" }, args(l.args)) : null))));
  } catch (err) {
    body.replaceChildren(el("p", { class: "error" }, "could not read the transaction: " + (err.message || err)));
  }
}
$("#tx-view-close").addEventListener("click", () => $("#tx-view").close());

function copyText(s) {
  const done = () => toast(`copied ${shortAddr(s)}`);
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(s).then(done, () => prompt("Copy:", s));
  else prompt("Copy:", s);
}

function renderActivity() {
  const kind = $("#filter-kind").value, trig = $("#filter-trigger").value;
  const evs = S.evaluations.filter((e) => (!trig || e.triggerId === trig) && (
    kind === "all" || (kind === "fired" && e.outcome === "fired") || (kind === "command" && e.cause === "command") ||
    (kind === "signal" && e.cause !== "command") || (kind === "failed" && (e.outcome === "failed" || e.outcome === "skipped"))));
  const ins = S.intents.filter((i) => (!trig || i.triggerId === trig) && kind !== "command" && kind !== "failed");
  $("#intents").replaceChildren(...ins.map((i) => el("li", { class: i.fresh ? "new" : "", title: `idempotency key ${i.idempotencyKey}`, "data-status": i.status },
    `${fmtTime(i.createdAt)} `, el("b", {}, i.action.kind), ` for “${nameOf(i.triggerId)}” `,
    el("span", { class: "badge " + i.status }, i.status),
    i.tx ? el("span", { class: "muted", title: (i.tx.hashes || []).join("\n") },
      ` tx ${shortAddr(i.tx.hash)}${i.tx.block ? `, block ${i.tx.block}` : ""}${i.tx.confirmations ? `, ${i.tx.confirmations} deep` : ""}`) : null,
    i.tx ? el("button", { type: "button", class: "small secondary copy", title: `copy ${i.tx.hash}`, onclick: () => copyText(i.tx.hash) }, "copy hash") : null,
    i.tx && S.chain && S.chain.dev ? el("button", { type: "button", class: "small secondary copy view", onclick: () => showTx(i.tx.hash) }, "view") : null,
    intentMoney(i),
    i.detail ? el("div", { class: "detail" }, i.detail) : null)));
  $("#gas-today").textContent = gasToday();
  $("#evaluations").replaceChildren(...evs.map((e) => e.cause === "command"
    ? el("li", { class: e.fresh ? "new" : "" }, `${fmtTime(e.at)} `, el("span", { class: "badge " + e.outcome }, e.outcome),
      ` ${COMMAND_WORDS[e.outcome] || e.outcome} “${e.detail || nameOf(e.triggerId)}”`)
    : el("li", { class: e.fresh ? "new" : "" }, `${fmtTime(e.at)} `, el("span", { class: "badge " + e.outcome }, e.outcome),
      ` “${nameOf(e.triggerId)}” `,
      el("span", { class: "muted" }, `${e.cause === "alarm" ? "on schedule" : e.cause.startsWith("signal:event:") ? "on-chain event" : e.cause.replace("signal:", "")}${e.value !== undefined ? " at " + fmtNum(e.value) : ""}${e.detail ? ": " + e.detail : ""}`))));
  for (const x of [...S.intents, ...S.evaluations]) delete x.fresh;
  const none = (id, shown, any, empty) => {
    $(id).classList.toggle("hidden", shown > 0);
    $(id).textContent = any ? "None that match the filter." : empty;
  };
  none("#no-intents", ins.length, S.intents.length, "None yet. When a trigger fires, the action it asks for (swap, transfer, call or notify) is recorded here with its status.");
  none("#no-evaluations", evs.length, S.evaluations.length, "None yet. Every evaluation of a trigger, and every change you make, appears here.");
  $("#older-intents").disabled = S.olderDone.intent;
  $("#older-evaluations").disabled = S.olderDone.evaluation;
}

// ---- live signals and the chart ---------------------------------------------

function addPoint(name, p) {
  const pts = S.signals.get(name) || [];
  pts.push(p);
  if (pts.length > 300) pts.shift();
  S.signals.set(name, pts);
  renderSignals();
}

// thresholds lists the thresholds of the vault's active and paused
// triggers on signal name.
function thresholds(name) {
  const out = [];
  const walk = (c, t) => {
    if (c.all || c.any) return (c.all || c.any).forEach((x) => walk(x, t));
    if (c.signal === name) out.push({ value: c.threshold, label: `${t.name} (${c.op}${t.status === "active" ? "" : ", paused"})`, paused: t.status !== "active" });
  };
  for (const t of S.triggers.values()) if (t.status === "active" || t.status === "paused") walk(t.condition, t);
  return out;
}

let plot = null, plotFor = null;
function renderSignals() {
  const names = [...S.signals.keys()].sort();
  if (!S.chartSignal && names.length) S.chartSignal = names.includes("ETH/USD") ? "ETH/USD" : names[0];
  const tabs = $("#signal-tabs");
  if (tabs.childElementCount !== names.length) {
    tabs.replaceChildren(...names.map((n) => el("button", { type: "button", role: "tab", "data-name": n, onclick: () => { S.chartSignal = n; renderSignals(); } }, n)));
    fillSignalSelects(names);
  }
  for (const b of tabs.children) b.setAttribute("aria-selected", b.dataset.name === S.chartSignal);
  const pts = S.signals.get(S.chartSignal) || [];
  const last = pts[pts.length - 1];
  $("#price-name").textContent = S.chartSignal || "no signal yet";
  $("#price-value").textContent = last ? fmtNum(last.value) : "—";
  $("#price-at").textContent = last ? `at ${fmtTime(last.at)}` : "";
  drawChart(pts, thresholds(S.chartSignal));
  prefillThreshold();
}

// chartData is the points as uPlot's columns, with a null between two
// points further apart than five times the usual spacing (and 10 s): the
// line breaks where the node had no data instead of bridging it.
function chartData(pts) {
  const xs = [], ys = [];
  const steps = pts.slice(1).map((p, i) => p.at - pts[i].at).sort((a, b) => a - b);
  const usual = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
  const gap = Math.max(10_000, 5 * usual);
  pts.forEach((p, i) => {
    if (i > 0 && p.at - pts[i - 1].at > gap) { xs.push((pts[i - 1].at + p.at) / 2000); ys.push(null); }
    xs.push(p.at / 1000); ys.push(p.value);
  });
  return [xs, ys];
}

// nearLines splits the thresholds into those the y scale takes in (within
// the prices' span, or 5 % of the price, of them) and the far ones, drawn
// clipped at the chart's edge so one far threshold does not flatten the
// price into a line.
function nearLines(lines, lo, hi) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { near: lines, far: [] };
  const w = Math.max(hi - lo, 0.05 * Math.max(Math.abs(lo), Math.abs(hi)));
  const near = [], far = [];
  for (const l of lines) (l.value >= lo - w && l.value <= hi + w ? near : far).push(l);
  return { near, far };
}

function drawChart(pts, lines) {
  const box = $("#chart");
  const data = chartData(pts);
  const width = Math.max(240, box.clientWidth);
  const opts = {
    width, height: 220,
    scales: {
      x: { time: true },
      y: {
        range: (u, lo, hi) => {
          const { near } = nearLines(u._lines || [], lo, hi);
          const vs = [lo, hi, ...near.map((l) => l.value)].filter((v) => Number.isFinite(v));
          if (!vs.length) return [0, 1];
          let a = Math.min(...vs), b = Math.max(...vs);
          const pad = (b - a) * 0.08 || Math.abs(a) * 0.01 || 1;
          return [a - pad, b + pad];
        },
      },
    },
    axes: [
      // Whole minutes (or more) apart, labelled hours:minutes: a few
      // minutes of points get a handful of labels that never overlap.
      { stroke: "#8a90a2", grid: { stroke: "#262a36" }, ticks: { stroke: "#262a36" }, space: 70,
        incrs: [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400],
        values: (u, vs) => vs.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })) },
      { stroke: "#8a90a2", grid: { stroke: "#262a36" }, ticks: { stroke: "#262a36" }, size: 70, values: (u, vs) => vs.map(fmtNum) },
    ],
    series: [{}, { label: S.chartSignal || "", stroke: "#8b7cf6", width: 1.5 }],
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.font = `${11 * devicePixelRatio}px system-ui`;
        ctx.textAlign = "left";
        ctx.textBaseline = "bottom";
        const { min, max } = u.scales.y;
        const top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
        let above = 0, below = 0;
        for (const l of u._lines || []) {
          const label = l.label.length > 48 ? l.label.slice(0, 47) + "…" : l.label;
          ctx.strokeStyle = l.paused ? "#8a90a2" : "#f0c36a";
          ctx.fillStyle = ctx.strokeStyle;
          if (l.value > max || l.value < min) {
            // Off the scale: a mark at the edge it lies beyond, with its value.
            const up = l.value > max;
            const y = up ? top + (++above) * 13 * devicePixelRatio : bottom - (below++) * 13 * devicePixelRatio - 3 * devicePixelRatio;
            ctx.textAlign = "right";
            ctx.fillText(`${up ? "▲" : "▼"} ${label} ${fmtNum(l.value)}`, u.bbox.left + u.bbox.width - 6 * devicePixelRatio, y);
            ctx.textAlign = "left";
            continue;
          }
          const y = u.valToPos(l.value, "y", true);
          if (!Number.isFinite(y)) continue;
          ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
          ctx.lineWidth = devicePixelRatio;
          ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke();
          ctx.fillText(`${label} ${fmtNum(l.value)}`, u.bbox.left + 6 * devicePixelRatio, y - 3 * devicePixelRatio);
        }
        u.root.dataset.offScale = above + below; // what the browser test reads
        ctx.restore();
      }],
    },
  };
  if (!plot || plotFor !== S.chartSignal) {
    if (plot) plot.destroy();
    box.replaceChildren();
    plot = new uPlot({ ...opts, hooks: { ...opts.hooks, init: [(u) => { u._lines = lines; }] } }, data, box);
    plotFor = S.chartSignal;
  }
  plot._lines = lines;
  plot.root.dataset.gaps = data[1].filter((v) => v === null).length;
  plot.setData(data); // rescales (the near thresholds are in its range) and redraws
  const xs = data[0];
  if (xs.length) {
    // At least the last five minutes, so a few points do not stretch over
    // a span of milliseconds, or one point over years.
    plot.setScale("x", { min: Math.min(xs[0], xs[xs.length - 1] - 300), max: xs[xs.length - 1] + 1 });
  }
}

new ResizeObserver(() => { if (plot) plot.setSize({ width: Math.max(240, $("#chart").clientWidth), height: 220 }); }).observe($("#chart"));

// Before sign-in the page reads the recent history over HTTP (signals are
// public market data) and reads it again every few seconds; signed in, the
// live frames keep it current.
async function pollHistory() {
  if (S.conn !== "live") {
    try {
      const r = await fetch("/v1/history", { cache: "no-store" });
      if (r.ok) {
        const { series } = await r.json();
        for (const [n, pts] of Object.entries(series)) if (!n.startsWith("read:") && !n.startsWith("move:")) S.signals.set(n, pts); // made for the vaults
        renderSignals();
      }
    } catch (_) { /* the node is down: the status says so */ }
  }
  setTimeout(pollHistory, 5000);
}

// ---- the trigger form --------------------------------------------------------

const form = $("#create");
const F = (name) => form.elements.namedItem(name); // not form.name or form.action: those are the form's own
const DAY = 86400000;

function fillSignalSelects(names) {
  for (const s of form.querySelectorAll("select[data-role=signal]")) {
    const cur = s.value;
    s.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    s.value = names.includes(cur) ? cur : S.chartSignal;
  }
}

// leafEditor builds the inputs of one leaf condition of kind (signal,
// every, at), named with prefix.
function leafEditor(kind, prefix) {
  const names = [...S.signals.keys()].sort();
  const field = (label, input, key, hint) => el("div", { class: "field" }, el("label", {}, label, input), hint ? el("p", { class: "hint" }, hint) : null,
    el("p", { class: "msg", "data-for": prefix + key }));
  if (kind === "signal") {
    return [
      field("Signal ", el("select", { name: prefix + "signal", "data-role": "signal", onchange: () => { resetPrefill(); prefillThreshold(); } },
        ...names.map((n) => el("option", { value: n, selected: n === S.chartSignal }, n))), "signal"),
      field("Direction ", el("select", { name: prefix + "op" }, el("option", { value: "below" }, "falls below"), el("option", { value: "above" }, "rises above")), "op"),
      field("Threshold ", el("input", { name: prefix + "threshold", type: "number", step: "any", inputmode: "decimal", "data-role": "threshold", oninput: (e) => { e.target.dataset.touched = "1"; } }), "threshold"),
    ];
  }
  const crossing = [
    field("Direction ", el("select", { name: prefix + "op" }, el("option", { value: "below" }, "falls below"), el("option", { value: "above" }, "rises above")), "op"),
    field("Threshold ", el("input", { name: prefix + "threshold", type: "number", step: "any", inputmode: "decimal" }), "threshold"),
  ];
  if (kind === "move") {
    return [
      field("Signal ", el("select", { name: prefix + "signal" }, ...names.map((n) => el("option", { value: n, selected: n === S.chartSignal }, n))), "signal"),
      field("Direction ", el("select", { name: prefix + "op" }, el("option", { value: "below" }, "falls by"), el("option", { value: "above" }, "rises by")), "op"),
      field("Percent ", el("input", { name: prefix + "pct", type: "number", min: "0", max: "100", step: "any", value: "5" }), "pct", "from the window's highest (a fall) or lowest (a rise)"),
      field("Within ", el("div", { class: "with-unit" },
        el("input", { name: prefix + "window", type: "number", min: "1", step: "any", value: "1" }),
        el("select", { name: prefix + "windowUnit", "aria-label": "window unit" }, el("option", { value: "60000" }, "minutes"),
          el("option", { value: "3600000", selected: true }, "hours"), el("option", { value: String(DAY) }, "days"))), "window", "a minute to 7 days"),
    ];
  }
  if (kind === "balance") {
    return [field("Token ", el("select", { name: prefix + "token" }, el("option", { value: "native" }, "ETH"),
      ...(S.chain?.tokens || []).map((t) => el("option", { value: t.symbol }, t.symbol))), "token", "your account's balance, read at every block"), ...crossing];
  }
  if (kind === "call") {
    return [
      field("Contract ", el("input", { name: prefix + "contract", placeholder: "0x…", spellcheck: "false" }), "contract"),
      field("View function ", el("input", { name: prefix + "function", placeholder: "getUserAccountData(address) returns (uint256)", spellcheck: "false" }), "function",
        "its first returned number, read at every block (a health factor, an allowance, a price)"),
      field("Arguments ", el("input", { name: prefix + "args", placeholder: "comma-separated", spellcheck: "false" }), "args"),
      field("Decimals ", el("input", { name: prefix + "decimals", type: "number", min: "0", max: "36", value: "18" }), "decimals"),
      ...crossing];
  }
  if (kind === "event") {
    return [
      field("Contract ", el("input", { name: prefix + "contract", placeholder: "0x…", spellcheck: "false" }), "contract"),
      field("Event ", el("input", { name: prefix + "signature", placeholder: "Transfer(address indexed from, address indexed to, uint256 value)", spellcheck: "false" }), "signature",
        "as the contract declares it; fires once for each log"),
      field("Filter ", el("input", { name: prefix + "topics", placeholder: "one value per indexed argument, comma-separated; empty for any", spellcheck: "false" }), "topics"),
      field("From block ", el("input", { name: prefix + "fromBlock", type: "number", min: "1", step: "1", placeholder: "the next block" }), "fromBlock",
        "empty: the next block; up to 100,000 blocks back"),
    ];
  }
  if (kind === "every") {
    return [field("Every ", el("div", { class: "with-unit" },
      el("input", { name: prefix + "every", type: "number", min: "1", step: "any", value: "1" }),
      el("select", { name: prefix + "everyUnit", "aria-label": "interval unit" }, el("option", { value: "1000" }, "seconds"), el("option", { value: "60000" }, "minutes"),
        el("option", { value: "3600000", selected: true }, "hours"), el("option", { value: String(DAY) }, "days"))), "every", "from now, up to 366 days")];
  }
  return [field("At ", el("input", { name: prefix + "at", type: "datetime-local" }), "at", "in the future, your local time")];
}

function renderForm() {
  const kind = F("kind").value;
  const main = $("#leaf-main");
  const compound = kind === "all" || kind === "any";
  main.replaceChildren(...(compound ? [] : leafEditor(kind, "")));
  $("#parts").classList.toggle("hidden", !compound);
  if (compound && !$("#part-list").childElementCount) { addPart("signal"); addPart("every"); }
  prefillThreshold();
}

let partN = 0;
function addPart(kind) {
  const n = partN++;
  const prefix = `p${n}.`;
  const part = el("div", { class: "part", "data-prefix": prefix });
  const kindSel = el("select", { name: prefix + "kind", "aria-label": "condition kind", onchange: () => { part.replaceChildren(kindField, ...leafEditor(kindSel.value, prefix), remove); prefillThreshold(); } },
    el("option", { value: "signal" }, "a signal crosses"), el("option", { value: "every" }, "every interval"), el("option", { value: "at" }, "once, at a time"),
    el("option", { value: "move" }, "a signal moves by a percent"),
    el("option", { value: "balance" }, "my balance crosses"), el("option", { value: "call" }, "a contract's number crosses"),
    el("option", { value: "event" }, "a contract emits an event"));
  kindSel.value = kind;
  const kindField = el("div", { class: "field" }, el("label", {}, "Condition ", kindSel));
  const remove = el("button", { type: "button", class: "secondary small", onclick: () => { part.remove(); } }, "remove");
  part.append(kindField, ...leafEditor(kind, prefix), remove);
  $("#part-list").append(part);
  return part;
}

// The threshold starts just below the current price, once: never over
// what a user typed.
function resetPrefill() { for (const i of form.querySelectorAll("input[data-role=threshold]")) delete i.dataset.touched; }
function prefillThreshold() {
  for (const i of form.querySelectorAll("input[data-role=threshold]")) {
    if (i.dataset.touched || i.value !== "") continue;
    const sig = form.querySelector(`select[name="${i.name.replace("threshold", "signal")}"]`);
    const pts = sig && S.signals.get(sig.value);
    if (pts && pts.length) { i.value = (pts[pts.length - 1].value * 0.999).toFixed(2); i.dataset.touched = "prefilled"; }
  }
}

// readLeaf reads one leaf condition; errs collects what is wrong, by field.
function readLeaf(kind, prefix, errs, warns) {
  const v = (k) => form.elements[prefix + k]?.value ?? "";
  if (kind === "signal") {
    const raw = v("threshold").trim();
    const th = Number(raw);
    if (!v("signal")) errs[prefix + "signal"] = "choose a signal (none has been published yet)";
    if (raw === "") errs[prefix + "threshold"] = "enter the threshold the signal must cross";
    else if (!Number.isFinite(th)) errs[prefix + "threshold"] = "the threshold must be a number";
    else if (Math.abs(th) >= 1e15) errs[prefix + "threshold"] = "the threshold must be below 1,000,000,000,000,000 in size";
    else if (th <= 0 && (S.chain?.feeds || []).some((f) => f.signal === v("signal"))) {
      errs[prefix + "threshold"] = `${v("signal")} is a price feed: its threshold must be above 0`;
    } else {
      const pts = S.signals.get(v("signal")) || [];
      const now = pts.length ? pts[pts.length - 1].value : null;
      if (now !== null && now > 0 && (th <= 0 || th > now * 10 || th < now / 10)) {
        warns[prefix + "threshold"] = `far from the current ${v("signal")} (${fmtNum(now)}): it may never be crossed`;
      }
    }
    return { signal: v("signal"), op: v("op"), threshold: th };
  }
  if (kind === "move") {
    const pct = Number(v("pct")), ms = Math.round(Number(v("window")) * Number(v("windowUnit")));
    if (!v("signal")) errs[prefix + "signal"] = "choose a signal (none has been published yet)";
    if (!(pct > 0 && pct <= 100)) errs[prefix + "pct"] = "a percent above 0, at most 100";
    if (!Number.isFinite(ms) || ms < 60000 || ms > 7 * DAY) errs[prefix + "window"] = "a window from a minute to 7 days";
    return { signal: v("signal"), op: v("op"), move: { pct, windowMs: ms } };
  }
  if (kind === "balance" || kind === "call") {
    const raw = v("threshold").trim(), th = Number(raw);
    if (raw === "" || !Number.isFinite(th)) errs[prefix + "threshold"] = "enter the number the read must cross";
    if (kind === "balance") return { read: { balance: v("token") }, op: v("op"), threshold: th };
    if (!/^0x[0-9a-fA-F]{40}$/.test(v("contract").trim())) errs[prefix + "contract"] = "a contract's address: 0x and 40 hex digits";
    if (!/^\w+\(.*\)/.test(v("function").trim())) errs[prefix + "function"] = "name(type,…), e.g. balanceOf(address)";
    const d = Number(v("decimals"));
    if (!Number.isInteger(d) || d < 0 || d > 36) errs[prefix + "decimals"] = "0 to 36";
    const args = v("args").split(",").map((a) => a.trim()).filter(Boolean);
    return { read: { contract: v("contract").trim(), function: v("function").trim(), args, decimals: d }, op: v("op"), threshold: th };
  }
  if (kind === "event") {
    const contract = v("contract").trim(), signature = v("signature").trim();
    if (!/^0x[0-9a-fA-F]{40}$/.test(contract)) errs[prefix + "contract"] = "a contract's address: 0x and 40 hex digits";
    if (!/^\s*(event\s+)?\w+\s*\(.*\)\s*$/.test(signature)) errs[prefix + "signature"] = "Name(type [indexed] [name], …), e.g. Transfer(address indexed from, address indexed to, uint256 value)";
    const topics = v("topics").split(",").map((t) => t.trim());
    while (topics.length && !topics[topics.length - 1]) topics.pop();
    const event = { contract, signature };
    if (topics.length) event.topics = topics;
    const fb = v("fromBlock").trim();
    if (fb !== "") {
      const n = Number(fb);
      if (!Number.isInteger(n) || n < 1) errs[prefix + "fromBlock"] = "a block number, or empty for the next block";
      else event.fromBlock = n;
    }
    return { event };
  }
  if (kind === "every") {
    const ms = Math.round(Number(v("every")) * Number(v("everyUnit")));
    if (!Number.isFinite(ms) || ms < 1000 || ms > 366 * DAY) errs[prefix + "every"] = "an interval from 1 second to 366 days";
    return { everyMs: ms };
  }
  const at = v("at") ? new Date(v("at")).getTime() : NaN;
  if (!Number.isFinite(at)) errs[prefix + "at"] = "choose a date and time";
  else if (at <= Date.now()) errs[prefix + "at"] = "the time must be in the future";
  return { atMs: at };
}

// readSpec builds the trigger spec from the form, checking what the vault
// checks; it returns null and shows the messages when something is wrong.
function readSpec() {
  const errs = {}, warns = {};
  const name = F("name").value.trim();
  if (!name) errs.name = "give the trigger a name";
  else if (name.length > 100) errs.name = "at most 100 characters";
  const kind = F("kind").value;
  let condition;
  if (kind === "all" || kind === "any") {
    const parts = [...$("#part-list").children].map((p) => readLeaf(form.elements[p.dataset.prefix + "kind"].value, p.dataset.prefix, errs, warns));
    if (!parts.length) errs.parts = "add at least one condition";
    if (parts.length > 16) errs.parts = "at most 16 conditions";
    condition = { [kind]: parts };
  } else {
    condition = readLeaf(kind, "", errs, warns);
  }
  const cooldown = Number(F("cooldown").value || 0) * Number(F("cooldownUnit").value);
  if (!Number.isFinite(cooldown) || cooldown < 0) errs.cooldown = "a cooldown of 0 or more";
  const maxFires = Number(F("maxFires").value || 0);
  if (!Number.isInteger(maxFires) || maxFires < 0) errs.maxFires = "a whole number, 0 or more";
  let expiresAt = 0;
  if (F("expires").value) {
    expiresAt = new Date(F("expires").value).getTime();
    if (!(expiresAt > Date.now())) errs.expires = "the expiry must be in the future";
  }
  for (const m of form.querySelectorAll(".msg")) {
    const k = m.dataset.for;
    m.textContent = errs[k] || warns[k] || "";
    m.classList.toggle("warn", !errs[k] && !!warns[k]);
    const input = form.elements[k];
    if (input && input.setAttribute) input.setAttribute("aria-invalid", errs[k] ? "true" : "false");
  }
  const params = readParams(F("action").value, errs);
  for (const m of form.querySelectorAll(".msg[data-for=params]")) m.textContent = errs.params || "";
  if (Object.keys(errs).length) return null;
  const spec = { name, condition, action: { kind: F("action").value }, cooldownMs: Math.round(cooldown), maxFires };
  if (params) spec.action.params = params;
  if (expiresAt) spec.expiresAt = expiresAt;
  if (F("paused").checked) spec.paused = true;
  return spec;
}

function resetForm() {
  S.editing = null;
  const signal = form.querySelector("select[data-role=signal]")?.value;
  form.reset();
  renderParams();
  $("#part-list").replaceChildren();
  $("#form-title").textContent = "New trigger";
  $("#btn-cancel-edit").classList.add("hidden");
  $("#edit-hint").classList.add("hidden");
  renderForm();
  const s = form.querySelector("select[data-role=signal]");
  if (s && signal) s.value = signal;
  resetPrefill();
  prefillThreshold();
  for (const m of form.querySelectorAll(".msg")) m.textContent = "";
  renderVault();
}

// editTrigger fills the form with a trigger, to save it with trigger.update.
function editTrigger(id) {
  const t = S.triggers.get(id);
  if (!t) return;
  S.editing = id;
  F("name").value = t.name;
  const c = t.condition;
  const leafKind = (l) => l.everyMs ? "every" : l.atMs ? "at" : l.move ? "move" : l.event ? "event" : l.read ? (l.read.balance ? "balance" : "call") : "signal";
  const kind = c.all ? "all" : c.any ? "any" : leafKind(c);
  F("kind").value = kind;
  $("#part-list").replaceChildren();
  renderForm();
  const fill = (leaf, prefix) => {
    const set = (k, v) => { const e = form.elements[prefix + k]; if (e) { e.value = v; e.dataset.touched = "1"; } };
    if (leaf.everyMs) {
      const [u] = UNITS.find(([u]) => leaf.everyMs % u === 0) || [1000];
      set("every", leaf.everyMs / u); set("everyUnit", String(u === 86400000 ? DAY : u));
    } else if (leaf.atMs) {
      set("at", new Date(leaf.atMs - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16));
    } else if (leaf.move) {
      set("signal", leaf.move.of); set("op", leaf.op); set("pct", leaf.move.pct);
      const [u] = [[DAY], [3600000], [60000]].find(([u]) => leaf.move.windowMs % u === 0) || [60000];
      set("window", leaf.move.windowMs / u); set("windowUnit", String(u));
    } else if (leaf.event) {
      // Saved, an edit starts again from the next block (fromBlock empty).
      set("contract", leaf.event.contract); set("signature", leaf.event.signature); set("topics", (leaf.event.topics || []).join(", "));
    } else if (leaf.read) {
      set("op", leaf.op); set("threshold", leaf.threshold);
      if (leaf.read.balance) set("token", leaf.read.balance);
      else { set("contract", leaf.read.contract); set("function", leaf.read.function); set("args", (leaf.read.args || []).join(", ")); set("decimals", leaf.read.decimals || 0); }
    } else { set("signal", leaf.signal); set("op", leaf.op); set("threshold", leaf.threshold); }
  };
  if (kind === "all" || kind === "any") {
    $("#part-list").replaceChildren();
    for (const leaf of c[kind]) fill(leaf, addPart(leafKind(leaf)).dataset.prefix);
  } else fill(c, "");
  F("action").value = t.action.kind;
  renderParams(t.action.params);
  const cd = t.cooldownMs || 0;
  const unit = cd % 3600000 === 0 && cd ? 3600000 : cd % 60000 === 0 ? 60000 : 1000;
  F("cooldownUnit").value = String(unit);
  F("cooldown").value = cd / unit;
  F("maxFires").value = t.maxFires || 0;
  F("expires").value = t.expiresAt ? new Date(t.expiresAt - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16) : "";
  F("paused").checked = t.status === "paused";
  $("#form-title").textContent = `Edit “${t.name}”`;
  $("#btn-cancel-edit").classList.remove("hidden");
  $("#edit-hint").classList.remove("hidden");
  renderVault();
  form.scrollIntoView({ behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth", block: "start" });
}

form.onsubmit = async (e) => {
  e.preventDefault();
  const err = $("#cmd-error");
  const spec = readSpec();
  if (!spec) {
    err.textContent = "The trigger was not saved: the form shows what to change.";
    return;
  }
  err.textContent = "";
  if (S.chain && spec.action.kind !== "notify") {
    // A trigger that moves value carries its own grant: the owner signs
    // exactly what it may do on-chain.
    if (!spec.maxFires) { err.textContent = "A trigger that moves value fires as many times as you sign: set Max fires (1 or more)."; return; }
    if (!spec.expiresAt) spec.expiresAt = Date.now() + 30 * DAY_S * 1000;
    try {
      err.textContent = "Signing the trigger's grant…";
      spec.delegation = await signTriggerGrant(spec);
      err.textContent = "";
    } catch (x) {
      err.textContent = "Could not sign the trigger's grant: " + (x.shortMessage || x.message);
      return;
    }
  }
  if (S.editing) command("trigger.update", { id: S.editing, spec }, `Save “${spec.name}”`);
  else command("trigger.create", spec, `Create “${spec.name}”`);
  resetForm();
};
F("kind").onchange = () => { $("#part-list").replaceChildren(); renderForm(); };
$("#btn-add-part").onclick = () => addPart("signal");
$("#btn-cancel-edit").onclick = resetForm;
F("maxFires").oninput = () => {
  $("#max-hint").textContent = Number(F("maxFires").value) === 0 ? "0: no limit; it fires on every crossing" : "then the trigger is done; 0: no limit";
};

// ---- the burner key ------------------------------------------------------------

function renderBurner() {
  const has = !!burnerKey();
  const other = location.hostname === "localhost" ? `http://127.0.0.1:${location.port}` : `http://localhost:${location.port}`;
  $("#burner-where").textContent = (has
    ? `This browser holds a burner key for ${location.origin}; using it again opens the same vault. `
    : `A burner key is a throwaway Ethereum key that this page makes and keeps in this browser's storage for ${location.origin}. `) +
    `Anyone with this browser profile can use it, and clearing the site's data deletes it: show it and keep a copy if the vault matters. ` +
    `Each address has its own storage, so ${other} holds another key, and shows another vault.`;
  $("#btn-export").classList.toggle("hidden", !has);
  $("#btn-burner").textContent = has ? "Use this browser's burner key" : "Make a burner key and sign in";
}

$("#btn-export").onclick = () => {
  const box = $("#export-box");
  box.classList.toggle("hidden");
  $("#export-key").value = burnerKey() || "";
  $("#export-key").select();
};
$("#btn-import").onclick = () => $("#import-box").classList.toggle("hidden");
$("#import-box").onsubmit = (e) => {
  e.preventDefault();
  const v = $("#import-key").value.trim();
  if (!/^0x[0-9a-fA-F]{64}$/.test(v)) { $("#import-error").textContent = "a private key is 0x and 64 hex digits"; return; }
  try { new ethers.Wallet(v); } catch (err) { $("#import-error").textContent = "not a valid key: " + err.message; return; }
  if (burnerKey() && burnerKey() !== v && !confirm("Replace this browser's burner key? Keep a copy of it first if its vault matters.")) return;
  localStorage.setItem("spells.burner", v);
  $("#import-error").textContent = "";
  $("#import-box").classList.add("hidden");
  $("#import-key").value = "";
  renderBurner();
  signIn(true);
};

// ---- wiring --------------------------------------------------------------

$("#btn-wallet").onclick = () => signIn(false);
$("#btn-burner").onclick = () => signIn(true);
if (!window.ethereum) $("#btn-wallet").classList.add("hidden");
$("#btn-signout").onclick = signOut;
// ---- the chain: action parameters, the smart account, grants ----------------

const DAY_S = 86400;
const pad32 = (n) => ethers.zeroPadValue(ethers.toBeHex(n), 32);
const pad16 = (n) => ethers.zeroPadValue(ethers.toBeHex(n), 16);
const SWAP_SELECTOR = ethers.id("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)").slice(0, 10);
const ERC20 = new ethers.Interface(["function approve(address,uint256)", "function transfer(address,uint256)"]);
const ROUTER = new ethers.Interface(["function swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"]);

// swapMinOut is the least a swap takes, in whole units of what it buys:
// the amount at the price its trigger fires at (its threshold on the
// pool's price, or the price now) less the tolerance; null without a price.
function swapMinOut(p) {
  const pool = S.chain.pool;
  if (!pool) return null;
  let price = null;
  const leaf = form.elements["signal"] && F("kind").value === "signal" && F("signal").value === pool.signal ? Number(F("threshold").value) : NaN;
  if (leaf > 0) price = leaf;
  else { const pts = S.signals.get(pool.signal) || []; if (pts.length) price = pts[pts.length - 1].value; }
  if (!(price > 0)) return null;
  const tok = (sym) => S.chain.tokens.find((t) => t.symbol === sym);
  const base = tok(p.sell)?.address.toLowerCase() === pool.token0.toLowerCase(); // selling token0 (dETH) for token1
  const out = (base ? Number(p.amount) * price : Number(p.amount) / price) * (1 - p.slippageBps / 10000);
  if (!(out > 0)) return null;
  let text = out.toFixed(Math.min(tok(p.buy)?.decimals ?? 18, 12));
  if (text.includes(".")) text = text.replace(/0+$/, "").replace(/\.$/, "");
  return text;
}

// triggerBatch is the calls a trigger's own grant pins, as the vault builds
// them from the action (PROTOCOL.md, "A trigger's own grant").
function triggerBatch(action, owner, end) {
  const c = S.chain, p = action.params;
  const tok = (sym) => c.tokens.find((t) => t.symbol === sym || t.address.toLowerCase() === String(sym).toLowerCase());
  if (action.kind === "swap") {
    const sell = tok(p.sell), buy = tok(p.buy);
    const amount = ethers.parseUnits(p.amount, sell.decimals), minOut = ethers.parseUnits(p.minOut, buy.decimals);
    return [[sell.address, 0n, ERC20.encodeFunctionData("approve", [c.router, amount])],
      [c.router, 0n, ROUTER.encodeFunctionData("swapExactTokensForTokens", [amount, minOut, [sell.address, buy.address], owner, end])]];
  }
  if (action.kind === "transfer") {
    if (p.token === "native") return [[p.to, ethers.parseUnits(p.amount, 18), "0x"]];
    const t = tok(p.token);
    return [[t.address, 0n, ERC20.encodeFunctionData("transfer", [p.to, ethers.parseUnits(p.amount, t.decimals)])]];
  }
  return [[p.target, BigInt(p.value || "0"), p.data || "0x"]];
}

// feedCaveat is the on-chain form of a trigger's condition when it is one
// threshold on a signal the chain has a price feed for (null otherwise):
// the threshold in the feed's decimals, rounded up for below, down for
// above, as the vault writes it.
function feedCaveat(cond) {
  const f = (S.chain.feeds || []).find((x) => x.signal === cond.signal);
  if (!f || cond.threshold === undefined) return null;
  const text = String(cond.threshold);
  if (!/^\d+(\.\d+)?$/.test(text) || !(cond.threshold > 0)) throw new Error(`${cond.signal} is a price feed: its threshold must be a positive decimal number`);
  const [whole, frac = ""] = text.split(".");
  const above = cond.op === "above";
  let t = BigInt(whole + frac.slice(0, f.decimals).padEnd(f.decimals, "0"));
  if (!above && /[1-9]/.test(frac.slice(f.decimals))) t += 1n;
  return { enforcer: S.chain.enforcers.FeedConditionEnforcer,
    terms: ethers.AbiCoder.defaultAbiCoder().encode(["address", "bool", "int256", "uint256"], [f.address, above, t, f.maxAge]) };
}

// signTriggerGrant signs, as the owner, the delegation a trigger spec's own
// grant is: exactly its calls (ExactExecutionBatch), its fires
// (LimitedCalls), its expiry (Timestamp) and, for a threshold on a price
// feed, that condition checked on-chain (FeedCondition), built here from
// the spec rather than taken from the node.
async function signTriggerGrant(spec) {
  const c = S.chain;
  const owner = ethers.getAddress(S.session.vault);
  const end = Math.ceil(spec.expiresAt / 1000);
  const batch = ethers.AbiCoder.defaultAbiCoder().encode(["tuple(address,uint256,bytes)[]"], [triggerBatch(spec.action, owner, end)]);
  const d = { delegate: S.account.sessionKey, delegator: owner, authority: "0x" + "f".repeat(64),
    caveats: [{ enforcer: c.enforcers.ExactExecutionBatchEnforcer, terms: batch },
      { enforcer: c.enforcers.LimitedCallsEnforcer, terms: pad32(spec.maxFires) },
      { enforcer: c.enforcers.TimestampEnforcer, terms: ethers.concat([pad16(0), pad16(end)]) },
      feedCaveat(spec.condition)].filter(Boolean),
    salt: "0x" + BigInt(ethers.hexlify(ethers.randomBytes(16))).toString(16) };
  const domain = { name: "DelegationManager", version: "1", chainId: c.chainId, verifyingContract: c.delegationManager };
  let signature;
  if (burnerKey() && burnerAddress() === owner.toLowerCase()) {
    signature = await new ethers.Wallet(burnerKey()).signTypedData(domain, DELEGATION_TYPES, d);
  } else if (window.ethereum) {
    const eip712Domain = [{ name: "name", type: "string" }, { name: "version", type: "string" }, { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }];
    const typed = { types: { EIP712Domain: eip712Domain, ...DELEGATION_TYPES }, domain, primaryType: "Delegation", message: d };
    signature = await window.ethereum.request({ method: "eth_signTypedData_v4", params: [owner, JSON.stringify(typed)] });
  } else {
    throw new Error("this needs the owner's key: the burner key this vault signed in with, or a browser wallet");
  }
  const signed = { ...d, caveats: d.caveats.map((x) => ({ ...x, args: "0x" })), signature };
  const kept = JSON.parse(localStorage.getItem("spells.delegations") || "[]");
  localStorage.setItem("spells.delegations", JSON.stringify([...kept, signed]));
  return signed;
}

async function loadChain() {
  try {
    const r = await fetch("/v1/chain", { cache: "no-store" });
    S.chain = r.ok ? await r.json() : null;
  } catch { S.chain = null; }
  renderParams();
  renderGrants();
}

const tokenOptions = (sel, withNative) => [...(S.chain ? S.chain.tokens : []).map((t) =>
  el("option", { value: t.symbol, selected: t.symbol === sel }, t.symbol)),
...(withNative ? [el("option", { value: "native", selected: sel === "native" }, "ETH (native)")] : [])];

function paramField(label, input, hint) {
  return el("div", { class: "field" }, el("label", { for: input.id }, label), input, hint ? el("p", { class: "hint" }, hint) : null);
}

// renderParams shows the fields of the chosen action's parameters (only on
// a node with a chain: without one nothing executes).
function renderParams(p) {
  const box = $("#action-params");
  const kind = F("action").value;
  box.classList.toggle("hidden", !S.chain || kind === "notify");
  if (!S.chain || kind === "notify") { box.replaceChildren(); return; }
  p = p || {};
  const input = (name, value, attrs) => el("input", { id: "p-" + name, name: "p-" + name, value: value ?? "", ...attrs });
  const select = (name, opts) => el("select", { id: "p-" + name, name: "p-" + name }, ...opts);
  let fields;
  if (kind === "swap") {
    fields = [paramField("Sell", select("sell", tokenOptions(p.sell || "dUSD"))), paramField("for", select("buy", tokenOptions(p.buy || "dETH"))),
      paramField("Amount", input("amount", p.amount || "250", { inputmode: "decimal" }), "of the token sold"),
      paramField("Price tolerance", input("slippage", p.slippageBps ? p.slippageBps / 100 : "1", { inputmode: "decimal" }),
        "% worse than the trigger's price at most: the least you receive is signed and checked on-chain")];
  } else if (kind === "transfer") {
    fields = [paramField("Token", select("token", tokenOptions(p.token || "dUSD", true))),
      paramField("To", input("to", p.to || "", { placeholder: "0x…", spellcheck: "false" })),
      paramField("Amount", input("amount", p.amount || "10", { inputmode: "decimal" }))];
  } else {
    fields = [paramField("Target", input("target", p.target || "", { placeholder: "0x…", spellcheck: "false" })),
      paramField("Calldata", input("data", p.data || "0x", { spellcheck: "false" })),
      paramField("Value", input("value", p.value || "0", { inputmode: "numeric" }), "wei")];
  }
  box.replaceChildren(...fields, el("p", { class: "hint", id: "quote" }), el("p", { class: "msg", "data-for": "params" }));
  if (kind === "swap") quoteSoon();
}

// The swap's quote, shown before Create: what the amount buys at the
// router's price now, the least the owner signs for, and the price impact
// of the amount (its price against that of a thousandth of it, so the
// pool's fee cancels out).
const ROUTER_QUOTE = new ethers.Interface(["function getAmountsOut(uint256,address[]) view returns (uint256[])"]);
let quoteTimer, quoteSeq = 0;
function quoteSoon() {
  clearTimeout(quoteTimer);
  quoteTimer = setTimeout(renderQuote, 250);
}
async function renderQuote() {
  const q = $("#quote");
  if (!q || !S.chain?.router || F("action").value !== "swap") return;
  const seq = ++quoteSeq;
  const v = (n) => (form.elements["p-" + n] || {}).value?.trim() ?? "";
  const sell = S.chain.tokens.find((t) => t.symbol === v("sell")), buy = S.chain.tokens.find((t) => t.symbol === v("buy"));
  if (!sell || !buy || sell === buy || !/^\d+(\.\d{1,18})?$/.test(v("amount")) || !(Number(v("amount")) > 0)) { q.textContent = ""; return; }
  try {
    const amount = ethers.parseUnits(v("amount"), sell.decimals);
    const small = amount / 1000n > 0n ? amount / 1000n : 1n;
    const p = chainProvider();
    const ask = async (n) => ROUTER_QUOTE.decodeFunctionResult("getAmountsOut",
      await p.call({ to: S.chain.router, data: ROUTER_QUOTE.encodeFunctionData("getAmountsOut", [n, [sell.address, buy.address]]) }))[0][1];
    const [out, outSmall] = await Promise.all([ask(amount), ask(small)]);
    if (seq !== quoteSeq) return;
    const got = Number(ethers.formatUnits(out, buy.decimals));
    const rate = Number(out) / Number(amount), rateSmall = Number(outSmall) / Number(small);
    const impact = Math.max(0, (1 - rate / rateSmall) * 100);
    const min = swapMinOut({ sell: v("sell"), buy: v("buy"), amount: v("amount"), slippageBps: Math.round(Number(v("slippage")) * 100) });
    q.textContent = `At the price now: about ${fmtNum(got)} ${buy.symbol} (price impact ${impact < 0.01 ? "under 0.01" : impact.toFixed(2)} %). ` +
      (min !== null ? `You sign for at least ${fmtNum(Number(min))} ${buy.symbol}, checked on-chain; less, and the swap reverts.` : "");
  } catch (e) {
    if (seq === quoteSeq) q.textContent = "No quote from the router: " + (e.shortMessage || e.message);
  }
}

// readParams reads the action's parameters, or records what is wrong.
function readParams(kind, errs) {
  if (!S.chain || kind === "notify") return undefined;
  const v = (n) => (form.elements["p-" + n] || {}).value?.trim() ?? "";
  const amountOK = (a) => /^\d+(\.\d{1,18})?$/.test(a) && Number(a) > 0;
  const held = (sym) => {
    const t = S.chain.tokens.find((x) => x.symbol === sym);
    const raw = sym === "native" ? S.portfolio?.account?.native : S.portfolio?.account?.tokens?.[sym];
    return t || sym === "native" ? (raw === undefined ? null : Number(ethers.formatUnits(raw, t ? t.decimals : 18))) : null;
  };
  const tooMuch = (sym, amount) => {
    const h = held(sym);
    return h !== null && Number(amount) > h ? `your account holds ${fmtNum(h)} ${sym === "native" ? "ETH" : sym}; this would need ${fmtNum(Number(amount))}` : "";
  };
  if (kind === "swap") {
    const slippage = Number(v("slippage"));
    if (!amountOK(v("amount"))) errs.params = "the amount is a positive number";
    else if (tooMuch(v("sell"), v("amount"))) errs.params = tooMuch(v("sell"), v("amount"));
    else if (v("sell") === v("buy")) errs.params = "sell one token for the other";
    else if (!(slippage > 0 && slippage <= 50)) errs.params = "slippage is more than 0 and at most 50 %";
    const out = { sell: v("sell"), buy: v("buy"), amount: v("amount"), slippageBps: Math.round(slippage * 100) };
    if (!errs.params) {
      const minOut = swapMinOut(out);
      if (minOut === null) errs.params = `a swap needs a price to sign its least output at: give it a threshold on ${S.chain.pool?.signal || "the pool's price"}, or wait for a price`;
      else out.minOut = minOut;
    }
    return out;
  }
  if (kind === "transfer") {
    if (!ethers.isAddress(v("to"))) errs.params = "send to an address (0x and 40 hex digits)";
    else if (!amountOK(v("amount"))) errs.params = "the amount is a positive number";
    else if (tooMuch(v("token"), v("amount"))) errs.params = tooMuch(v("token"), v("amount"));
    return { token: v("token"), to: v("to"), amount: v("amount") };
  }
  if (!ethers.isAddress(v("target"))) errs.params = "call an address (0x and 40 hex digits)";
  else if (!/^0x([0-9a-fA-F]{2})*$/.test(v("data"))) errs.params = "calldata is 0x and hex bytes";
  else if (!/^\d+$/.test(v("value"))) errs.params = "the value is a whole number of wei";
  return { target: v("target"), data: v("data"), value: v("value") };
}

// The default grant a burner key makes: two delegations to the vault's
// session key, each valid for 30 days: spend up to 5 dETH and up to 10,000
// dUSD a day (transfers of those tokens only, to anyone: a standing
// allowance). Swaps never use it: each swap trigger is signed with its own
// grant (signTriggerGrant).
function defaultRules() {
  const c = S.chain, now = Math.floor(Date.now() / 1000);
  const tok = (sym) => c.tokens.find((t) => t.symbol === sym);
  const until = now + 30 * DAY_S;
  const window = { enforcer: c.enforcers.TimestampEnforcer, terms: ethers.concat([pad16(0), pad16(until)]) };
  const period = (t, units) => ({ enforcer: c.enforcers.ERC20PeriodTransferEnforcer,
    terms: ethers.concat([t.address, pad32(ethers.parseUnits(units, t.decimals)), pad32(DAY_S), pad32(now - 60)]) });
  const out = [];
  for (const [sym, units] of [["dETH", "5"], ["dUSD", "10000"]]) {
    const t = tok(sym);
    if (t) out.push({ what: `spend up to ${fmtNum(units)} ${sym} a day`, caveats: [period(t, units), window] });
  }
  return out;
}

function chainProvider() {
  return new ethers.JsonRpcProvider(location.origin + "/v1/chain/rpc", S.chain.chainId, { staticNetwork: true, batchMaxCount: 1 });
}

// setUpAndGrant turns the burner key's address into a smart account
// (EIP-7702, to the framework's DeleGator) if it is not one yet, then signs
// the default delegations to the vault's session key and adds them.
async function setUpAndGrant() {
  const msg = $("#grant-msg");
  const btn = $("#btn-grant");
  if (!S.session) { msg.className = "msg error"; msg.textContent = "Sign in first."; return; }
  btn.disabled = true;
  msg.className = "msg";
  try {
    const c = S.chain;
    if (!burnerKey() || !S.account) throw new Error("this needs the burner key this vault signed in with");
    const provider = chainProvider();
    const w = new ethers.Wallet(burnerKey(), provider);
    if (w.address.toLowerCase() !== S.session.vault.toLowerCase()) throw new Error("the burner key here is not this vault's owner");
    const code = await provider.getCode(w.address);
    const want = ("0xef0100" + c.deleGator.slice(2)).toLowerCase();
    if (code.toLowerCase() !== want) {
      msg.textContent = "Making your address a smart account (an EIP-7702 authorization)…";
      const nonce = await provider.getTransactionCount(w.address);
      const auth = await w.authorize({ address: c.deleGator, nonce: nonce + 1, chainId: c.chainId });
      const tx = await w.sendTransaction({ type: 4, to: w.address, authorizationList: [auth], nonce, gasLimit: 200000 });
      await tx.wait();
    }
    msg.textContent = "Signing the grant…";
    await grantDefaults(w.address, (domain, d) => w.signTypedData(domain, DELEGATION_TYPES, d));
  } catch (e) {
    msg.className = "msg error";
    msg.textContent = "Could not set up the grant: " + (e.shortMessage || e.message);
  } finally {
    btn.disabled = false;
  }
}

// grantDefaults signs the default delegations from owner to the vault's
// session key with sign(domain, delegation, what) (EIP-712 typed data),
// keeps them in this browser (so a revoke can also disable them on-chain)
// and adds them as a grant.
async function grantDefaults(owner, sign) {
  const c = S.chain;
  const domain = { name: "DelegationManager", version: "1", chainId: c.chainId, verifyingContract: c.delegationManager };
  const delegations = [];
  for (const r of defaultRules()) {
    const d = { delegate: S.account.sessionKey, delegator: owner, authority: "0x" + "f".repeat(64), // ROOT_AUTHORITY: the owner's own delegation
      caveats: r.caveats.map((x) => ({ enforcer: x.enforcer, terms: ethers.hexlify(x.terms) })),
      salt: "0x" + BigInt(ethers.hexlify(ethers.randomBytes(16))).toString(16) };
    const signature = await sign(domain, d, r.what);
    delegations.push({ ...d, caveats: d.caveats.map((x) => ({ ...x, args: "0x" })), signature });
  }
  $("#grant-msg").textContent = "";
  const kept = JSON.parse(localStorage.getItem("spells.delegations") || "[]");
  localStorage.setItem("spells.delegations", JSON.stringify([...kept, ...delegations]));
  command("grant.add", { delegations }, "Grant the default limits");
}

// walletGrant signs the default delegations with the browser wallet
// (eth_signTypedData_v4). The wallet's account must already be a smart
// account delegated to the framework's DeleGator: wallets make that switch
// in their own screens (EIP-7702), not at a page's request.
async function walletGrant() {
  const msg = $("#grant-msg");
  const btn = $("#btn-grant-wallet");
  if (!S.session) { msg.className = "msg error"; msg.textContent = "Sign in first."; return; }
  btn.disabled = true;
  msg.className = "msg";
  try {
    const c = S.chain;
    if (!window.ethereum) throw new Error("no browser wallet found");
    const [acct] = await window.ethereum.request({ method: "eth_requestAccounts" });
    if (!acct || acct.toLowerCase() !== S.session.vault.toLowerCase()) throw new Error("the wallet's account is not this vault's owner");
    if (await grantWith7715(acct)) return;
    const code = await chainProvider().getCode(acct);
    if (code.toLowerCase() !== ("0xef0100" + c.deleGator.slice(2)).toLowerCase()) {
      throw new Error(`your account is not a smart account yet: switch it to one in your wallet (EIP-7702, delegating to the framework's DeleGator ${c.deleGator}), then grant again`);
    }
    const eip712Domain = [{ name: "name", type: "string" }, { name: "version", type: "string" }, { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }];
    await grantDefaults(ethers.getAddress(acct), (domain, d, what) => {
      msg.textContent = `Sign in your wallet: ${what}…`;
      const typed = { types: { EIP712Domain: eip712Domain, ...DELEGATION_TYPES }, domain, primaryType: "Delegation", message: d };
      return window.ethereum.request({ method: "eth_signTypedData_v4", params: [acct, JSON.stringify(typed)] });
    });
  } catch (e) {
    msg.className = "msg error";
    msg.textContent = "Could not grant with the wallet: " + (e.shortMessage || e.message);
  } finally {
    btn.disabled = false;
  }
}

// grantWith7715 asks a wallet that has ERC-7715 (wallet_grantPermissions)
// for a periodic dUSD allowance to the vault's session key, and adds the
// permission context it returns. false: the wallet has no such method.
async function grantWith7715(acct) {
  const c = S.chain;
  const usd = c.tokens.find((t) => t.symbol === "dUSD");
  if (!usd) return false;
  let res;
  try {
    res = await window.ethereum.request({ method: "wallet_grantPermissions", params: [{
      chainId: ethers.toBeHex(c.chainId), address: acct, expiry: Math.floor(Date.now() / 1000) + 30 * DAY_S,
      signer: { type: "account", data: { address: S.account.sessionKey } },
      permission: { type: "erc20-token-periodic", data: { tokenAddress: usd.address,
        periodAmount: ethers.toBeHex(ethers.parseUnits("10000", usd.decimals)), periodDuration: DAY_S,
        justification: "Spells: let your vault spend up to 10,000 dUSD a day for your triggers" } },
      isAdjustmentAllowed: true }] });
  } catch (e) {
    if (e && (e.code === -32601 || e.code === 4200 || /not (supported|found)|unsupported/i.test(e.message || ""))) return false;
    throw e;
  }
  const ctx = res && res[0] && res[0].context;
  if (!ctx) throw new Error("the wallet granted no permission");
  command("grant.add", { permissionContext: ctx }, "Grant the wallet's permission");
  $("#grant-msg").textContent = "Your wallet granted a dUSD allowance (ERC-7715); swaps also need the pool's swap, which the wallet's permission types do not cover.";
  return true;
}

// usedOf says what the vault used of a delegation with rules r (its use u).
function usedOf(r, u) {
  const parts = [];
  const w = r.token || r.native;
  if (w) {
    const sym = r.token ? ((S.chain?.tokens.find((t) => t.address.toLowerCase() === String(r.token.token).toLowerCase()) || {}).symbol || "tokens") : "ETH";
    const period = Math.floor((Date.now() / 1000 - w.start) / w.duration);
    const spent = u && u.spent && u.period === period ? u.spent : "0";
    parts.push(`${fmtUnits(spent)} of ${fmtUnits(w.amount)} ${sym} used ${w.duration === DAY_S ? "today" : "this period"}`);
  }
  if (r.maxCalls) parts.push(`${u ? u.calls : 0} of ${r.maxCalls} calls used`);
  return parts.join(", ");
}

function describeRules(r) {
  const sym = (a) => (S.chain?.tokens.find((t) => t.address.toLowerCase() === String(a).toLowerCase()) || {}).symbol || shortAddr(a);
  const per = (s) => s === DAY_S ? "day" : s === 3600 ? "hour" : fmtDuration(s * 1000);
  const parts = [];
  if (r.token) parts.push(`spend up to ${fmtUnits(r.token.amount)} ${sym(r.token.token)} a ${per(r.token.duration)}`);
  if (r.native) parts.push(`spend up to ${fmtUnits(r.native.amount)} ETH a ${per(r.native.duration)}`);
  if (r.targets) parts.push(`call ${r.targets.map((a) => (S.chain?.pool && a.toLowerCase() === S.chain.pool.address.toLowerCase()) ? "the pool" : sym(a)).join(", ")}`);
  if (r.methods) parts.push(`methods ${r.methods.map((m) => m === SWAP_SELECTOR ? "swap" : m).join(", ")}`);
  if (r.batch) parts.push(`exactly its ${r.batch.length} signed call${r.batch.length > 1 ? "s" : ""}${r.batch.some((x) => x.target.toLowerCase() === S.chain?.router?.toLowerCase()) ? " (a swap through the router, to you)" : ""}`);
  if (r.maxValue !== undefined) parts.push(`value ≤ ${r.maxValue} wei a call`);
  if (r.maxCalls) parts.push(`at most ${r.maxCalls} call${r.maxCalls === 1 ? "" : "s"}`);
  if (r.notAfter) parts.push(`until ${new Date(r.notAfter * 1000).toLocaleDateString()}`);
  return parts.join("; ");
}

function renderGrants() {
  const card = $("#grants-card");
  card.classList.toggle("hidden", !S.chain || !S.session || !S.loaded);
  if (!S.chain || !S.session) {
    $("#grants").replaceChildren();
    return;
  }
  const ownBurner = !!burnerKey() && !!S.session && burnerAddress() === S.session.vault.toLowerCase();
  $("#btn-grant").classList.toggle("hidden", !ownBurner);
  $("#btn-grant-wallet").classList.toggle("hidden", ownBurner || !window.ethereum || !S.session);
  $("#grant-what").textContent = "Default limits: " + defaultRules().map((r) => r.what).join(", ") + "; for 30 days. " +
    "This is a standing allowance: whoever stole this node could send up to that much a day to any address until you revoke it. " +
    "Swap triggers never need it: each is signed with its own grant, which lets the node do that trigger's swap, paid to you, and nothing else.";
  const gs = [...S.grants.values()];
  const granted = gs.some((g) => g.status === "active" && S.account && g.sessionKey === S.account.sessionKey);
  $("#account-state").textContent = granted ? "granted" : "no grant to the current key yet";
  $("#btn-grant").textContent = granted ? "Grant the default limits again" : "Set up my smart account and grant the default limits";
  $("#grants").replaceChildren(...gs.map((g) => el("li", { "data-status": g.status },
    el("span", { class: "badge " + (g.status === "active" ? "active" : "paused") }, g.status), " ",
    g.trigger ? el("span", { class: "muted" }, `trigger “${S.triggers.get(g.trigger)?.name || g.trigger}”: `) : el("span", { class: "muted" }, "standing: "),
    el("span", {}, g.delegations.map((d) => describeRules(d.rules)).join(" · ")), " ",
    g.delegations.some((d) => usedOf(d.rules, d.used)) ? el("div", { class: "money" }, g.delegations.map((d) => usedOf(d.rules, d.used)).filter(Boolean).join(" · ")) : null,
    el("span", { class: "muted", title: g.id }, `to key ${shortAddr(g.sessionKey)}`), " ",
    g.status === "active" ? el("button", { class: "small danger", onclick: () => {
      if (confirm("Revoke this grant? Your vault stops using it at once, and a burner key also disables it on-chain.")) revokeGrant(g);
    } }, "revoke") : null)));
}

const DELEGATION_TYPES = { Delegation: [{ name: "delegate", type: "address" }, { name: "delegator", type: "address" },
  { name: "authority", type: "bytes32" }, { name: "caveats", type: "Caveat[]" }, { name: "salt", type: "uint256" }],
Caveat: [{ name: "enforcer", type: "address" }, { name: "terms", type: "bytes" }] };

// revokeGrant stops the vault using g and, for delegations this browser's
// burner key signed, disables them on-chain too (the owner's own
// transactions to the DelegationManager), so even a node that ignored the
// revoke could not redeem them.
async function revokeGrant(g) {
  command("grant.revoke", { id: g.id }, "Revoke a grant");
  const msg = $("#grant-msg");
  try {
    const burner = !!burnerKey() && burnerAddress() === S.session.vault.toLowerCase();
    if (!burner && !window.ethereum) return;
    const hashes = new Set(g.delegations.map((d) => d.hash.toLowerCase()));
    const kept = JSON.parse(localStorage.getItem("spells.delegations") || "[]")
      .filter((d) => hashes.has(ethers.TypedDataEncoder.hashStruct("Delegation", DELEGATION_TYPES, d).toLowerCase()));
    if (!kept.length) return;
    const iface = new ethers.Interface(["function disableDelegation((address delegate,address delegator,bytes32 authority,(address enforcer,bytes terms,bytes args)[] caveats,uint256 salt,bytes signature) _delegation)"]);
    const provider = chainProvider();
    const w = burner ? new ethers.Wallet(burnerKey(), provider) : null;
    msg.className = "msg";
    msg.textContent = "Disabling the grant on-chain…";
    for (const d of kept) {
      const data = iface.encodeFunctionData("disableDelegation", [[d.delegate, d.delegator, d.authority, d.caveats.map((c) => [c.enforcer, c.terms, c.args || "0x"]), d.salt, d.signature]]);
      if (w) {
        await (await w.sendTransaction({ to: S.chain.delegationManager, data })).wait();
      } else {
        const hash = await window.ethereum.request({ method: "eth_sendTransaction", params: [{ from: S.session.vault, to: S.chain.delegationManager, data }] });
        await provider.waitForTransaction(hash);
      }
    }
    msg.textContent = `Disabled on-chain too (${kept.length} delegation${kept.length > 1 ? "s" : ""}).`;
  } catch (e) {
    msg.className = "msg error";
    msg.textContent = "The vault stopped using the grant, but disabling it on-chain failed: " + (e.shortMessage || e.message);
  }
}

function burnerAddress() {
  const pk = burnerKey();
  return pk ? new ethers.Wallet(pk).address.toLowerCase() : "";
}

$("#btn-signout-all").onclick = signOutEverywhere;
$("#btn-grant").onclick = setUpAndGrant;
$("#btn-grant-wallet").onclick = walletGrant;
$("#action-params").addEventListener("input", quoteSoon);
form.addEventListener("input", (e) => { if (e.target.name && e.target.name.endsWith("threshold")) quoteSoon(); });
F("action").addEventListener("change", () => {
  renderParams();
  // What moves value fires as many times as its grant is signed for.
  if (S.chain && F("action").value !== "notify" && !Number(F("maxFires").value)) F("maxFires").value = 1;
});
loadChain();
$("#btn-rotate").onclick = () => {
  if (confirm("Make a new session key for this vault? Grants made to the current key stop serving; you grant the new one."))
    command("key.rotate", {}, "Rotate the session key");
};
$("#filter-kind").onchange = renderActivity;
$("#filter-trigger").onchange = renderActivity;
$("#older-intents").onclick = () => loadOlder("intent");
$("#older-evaluations").onclick = () => loadOlder("evaluation");

renderBurner();
renderForm();
setConn("connecting");
connect();
pollHistory();
