// The web inbox: plain JavaScript over the public API (/v1), nothing else.
"use strict";

const state = {
  session: JSON.parse(localStorage.getItem("moltbot.session") || "null"),
  cursor: null,
  current: null, // conversation id on screen
  lastSeq: 0, // last event seq seen on the live stream
  events: null,
};

const $ = (id) => document.getElementById(id);
const text = (value) => document.createTextNode(value == null ? "" : String(value));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(typeof child === "string" ? text(child) : child);
  return node;
}

// What just happened ("Snoozed until …") stays a few seconds before the live counter takes
// the line again.
let statusSaid = 0;
function status(message) {
  $("status").textContent = message;
  statusSaid = Date.now();
}

function liveStatus(message) {
  if (Date.now() - statusSaid > 4000) $("status").textContent = message;
}

// 401s about what was sent (a wrong password or code), not about the session: shown as they
// are. Any other 401 asks for a fresh access token (and signs out when that fails).
const CREDENTIAL_ERRORS = ["invalid_credentials", "otp_required", "invalid_otp"];

// A failed call throws an Error with the API's words as message, and its status, error code
// and field. `anonymous`: a call that needs no session (sign-in, links from mail).
async function api(path, { method = "GET", body, params, headers: extra, anonymous = false } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { "Content-Type": "application/json", ...(extra || {}) };
  const signedIn = state.session && !anonymous;
  if (signedIn) headers.Authorization = `Bearer ${state.session.access_token}`;
  const send = () => fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
  let response = await send();
  let data = response.status === 204 ? null : await response.json().catch(() => null);
  // A read that waits for the read models (?min_seq=) asks again while they catch up:
  // a busy moment must not leave the page without what it was told about.
  for (let tries = 0; response.status === 503 && data && data.error === "not_caught_up" && tries < 5; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 1000 * Number(response.headers.get("Retry-After") || 1)));
    response = await send();
    data = response.status === 204 ? null : await response.json().catch(() => null);
  }
  if (response.status === 401 && signedIn && !CREDENTIAL_ERRORS.includes(data && data.error) && (await refresh())) {
    headers.Authorization = `Bearer ${state.session.access_token}`;
    response = await send();
    data = response.status === 204 ? null : await response.json().catch(() => null);
  }
  if (response.status === 402 && data && data.error === "plan_limit") {
    throw apiError(response.status, data, data.upgrade ? `${data.detail} Upgrade on the Usage page.` : data.detail);
  }
  if (!response.ok) throw apiError(response.status, data, data && data.detail ? data.detail : `HTTP ${response.status}`);
  return data;
}

function apiError(status, data, message) {
  const error = new Error(message);
  error.status = status;
  error.code = data ? data.error : undefined;
  error.field = data ? data.field : undefined;
  return error;
}

// A refresh token works once (the gateway rotates it; a second use ends the session), so
// one refresh at a time — across tabs too, which share the session in localStorage.
let refreshing = null;

function refresh() {
  if (!refreshing) {
    const once = () => refreshOnce();
    const locked = navigator.locks ? navigator.locks.request("moltbot.refresh", once) : once();
    refreshing = locked.finally(() => (refreshing = null));
  }
  return refreshing;
}

async function refreshOnce() {
  if (!state.session) return false; // logged out while waiting
  const saved = JSON.parse(localStorage.getItem("moltbot.session") || "null");
  if (saved && saved.refresh_token !== state.session.refresh_token) {
    state.session = saved; // another tab refreshed already
    return true;
  }
  const response = await fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: state.session.refresh_token }),
  });
  if (!response.ok) {
    logout();
    return false;
  }
  const tokens = await response.json();
  saveSession({ ...state.session, ...tokens });
  return true;
}

// Signing out also stops this device's notifications from the inbox (while the token still works).
async function signOut() {
  if (state.session && pushSupported() && pushIds()[pushSlot()]) await turnPushOff().catch(() => {});
  endServerSession();
  logout();
}

// End the session on the server too: its refresh token stops working everywhere.
function endServerSession() {
  if (!state.session) return;
  fetch("/v1/auth/logout", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: state.session.refresh_token }),
  }).catch(() => {});
}

function saveSession(session) {
  state.session = session;
  localStorage.setItem("moltbot.session", JSON.stringify(session));
}

function logout() {
  localStorage.removeItem("moltbot.session");
  state.session = null;
  state.me = null;
  if (state.events) state.events.close();
  leaveInbox();
  show("auth");
}

// What belongs to the inbox on screen: gone when signing out or switching to another inbox.
function leaveInbox() {
  $("try-panel").hidden = true;
  document.body.classList.remove("trying");
  $("try-it").setAttribute("aria-expanded", "false");
  $("try-frame").removeAttribute("src");
  state.current = null;
  state.cursor = null;
  $("conversations").replaceChildren();
  $("conversation").replaceChildren(el("p", { class: "muted" }, "Choose a conversation."));
  document.body.classList.remove("reading");
  $("results").hidden = true;
  $("notice").hidden = true;
}

const VIEWS = ["auth", "account", "inbox", "agent", "channels", "bridge", "usage", "settings"];

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  $("nav").hidden = view === "auth" || view === "account";
  for (const button of document.querySelectorAll("nav [data-view]")) {
    button.setAttribute("aria-current", button.dataset.view === view ? "page" : "false");
  }
  // Forms with passwords exist only while on screen (each view builds them when it opens).
  if (view !== "settings") $("settings-body").replaceChildren();
  if (view !== "account") $("account-body").replaceChildren();
  if (view !== "auth") resetSignIn();
  if (view === "channels") loadChannels();
  if (view === "bridge") loadDevices();
  if (view === "agent") loadAgent();
  if (view === "usage") loadUsage();
  if (view === "settings") showSettings();
}

// --- accounts ---------------------------------------------------------------------------

// Sign-in asks for the second factor only when the account has one (401 otp_required).
$("auth-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const form = submit.target.elements;
  const mode = submit.submitter ? submit.submitter.value : "login";
  $("auth-error").textContent = "";
  $("auth-info").textContent = "";
  const body = { email: form.email.value, password: form.password.value };
  const otp = form.otp.value.trim();
  if (mode === "login" && !$("otp-field").hidden && otp) body.otp = otp;
  try {
    const data = await api(`/v1/auth/${mode}`, { method: "POST", body, anonymous: true });
    signedIn(data);
    await start(data.seq);
  } catch (error) {
    if (error.code === "otp_required") {
      $("otp-field").hidden = false;
      $("auth-info").textContent = "Two-factor sign-in is on for this account: enter the code from your authenticator app, then Log in.";
      $("login-otp").focus();
      return;
    }
    $("auth-error").textContent = error.message;
    if (error.code === "invalid_otp") {
      form.otp.value = "";
      $("login-otp").focus();
    }
  }
});

// A session from sign-in, sign-up, an accepted invitation or a switch of inbox.
function signedIn(data) {
  saveSession({ ...data.tokens, tenant_id: data.tenant_id, user_id: data.user_id, role: data.role, seq: data.seq });
  state.me = null;
}

// The sign-in card as new: no password, no code, no messages left on it.
function resetSignIn() {
  const form = $("auth-form").elements;
  form.password.value = "";
  form.otp.value = "";
  $("otp-field").hidden = true;
  $("auth-error").textContent = "";
  $("auth-info").textContent = "";
}

// Back to the sign-in card, with a message on it (after a reset, a sign-out from Settings…).
function showSignIn(message) {
  show("auth");
  $("auth-info").textContent = message || "";
}

$("forgot").addEventListener("click", () => showForgotPassword($("auth-form").elements.email.value));
$("logout").addEventListener("click", signOut);
for (const button of document.querySelectorAll("nav [data-view]")) {
  button.addEventListener("click", () => show(button.dataset.view));
}

// --- inbox -------------------------------------------------------------------------------

function conversationItem(c) {
  const unread = c.unread_count ? el("span", { class: "unread", "aria-label": `${c.unread_count} unread` }, String(c.unread_count)) : "";
  const button = el(
    "button",
    { "aria-current": String(c.conversation_id === state.current), onclick: () => openConversation(c) },
    unread,
    el("span", { class: "badge" }, c.channel),
    c.pinned ? el("span", { class: "pin", "aria-label": "pinned" }, "📌") : "",
    el("strong", {}, c.title),
    el("span", { class: "preview" }, c.last_message_preview || "No messages yet"),
  );
  return el("li", {}, button);
}

// "Needs reply" (the default) or "All": what waits for an answer, or everything.
function chooseView(view) {
  state.view = view;
  $("view-waiting").setAttribute("aria-selected", String(view === "waiting"));
  $("view-all").setAttribute("aria-selected", String(view === "all"));
  $("view-reminders").setAttribute("aria-selected", String(view === "reminders"));
  $("view-digest").setAttribute("aria-selected", String(view === "digest"));
  loadConversations().catch((error) => status(error.message));
}

// "Today": the day at a glance (GET /v1/digest), what the morning digest sends.
async function loadDigest({ minSeq } = {}) {
  const [day, same] = await Promise.all([
    api("/v1/digest", { params: { min_seq: minSeq } }),
    api("/v1/contacts/suggestions", { params: { limit: 10, min_seq: minSeq } }),
  ]);
  const open = (id) => async () => openConversation(await api(`/v1/conversations/${id}`));
  const heading = (label) => el("li", { class: "muted" }, el("strong", {}, label));
  const items = [];
  if (day.while_away) {
    const h = day.while_away.happened;
    items.push(heading("While you were away"), el("li", {}, el("span", { class: "preview" },
      `${plural(h.received, "message")} in ${plural(h.conversations, "conversation")}; the away answer went to ${h.noticed}; ${h.still_waiting} still wait for a reply.`)));
  }
  if (day.needs_reply.length) items.push(heading("Waiting for your reply"));
  for (const w of day.needs_reply) {
    items.push(el("li", {}, el("button", { type: "button", onclick: open(w.conversation_id) },
      el("span", { class: "badge" }, w.channel), el("strong", {}, w.title), el("span", { class: "preview" }, w.last_message_preview || ""))));
  }
  if (day.follow_ups.length) items.push(heading("Follow-ups due today"));
  for (const f of day.follow_ups) {
    items.push(el("li", {}, el("button", { type: "button", onclick: open(f.conversation_id) },
      el("strong", {}, f.title || "A conversation"), el("span", { class: "preview" }, f.note || "Follow up"))));
  }
  if (day.mentions.length) items.push(heading("Mentioned in groups"));
  for (const m of day.mentions) {
    items.push(el("li", {}, el("button", { type: "button", onclick: open(m.conversation_id) },
      el("span", { class: "badge" }, m.channel), el("strong", {}, `${m.sender_name} in ${m.title}`), el("span", { class: "preview" }, m.text))));
  }
  if (day.channels.length) items.push(heading("Channels that need you"));
  for (const c of day.channels) {
    items.push(el("li", {}, el("button", { type: "button", onclick: () => show("channels") },
      el("strong", {}, c.display_name), el("span", { class: "preview" }, c.state_message || "Reconnect it"))));
  }
  if (same.length) items.push(heading("The same person?"));
  for (const pair of same) {
    const merge = el("button", { type: "button", class: "secondary", onclick: async () => {
      const accepted = await api(`/v1/contacts/${pair.contact_id}/merge`, { method: "POST", body: { contact_id: pair.other_contact_id } });
      status(`Merged: ${pair.other_display_name} is ${pair.display_name} too.`);
      await loadDigest({ minSeq: accepted.seq });
    } }, "Merge");
    items.push(el("li", {}, el("span", { class: "preview" }, `${pair.display_name} and ${pair.other_display_name}: ${pair.reason}`), merge));
  }
  $("conversations").replaceChildren(...items);
  $("more").hidden = true;
  $("empty").hidden = items.length > 0;
  $("empty").textContent = `Nothing needs you today. ${plural(day.received, "message")} came in.`;
  await showCounts(minSeq);
}

// Follow-ups that came due: open the conversation, or dismiss the reminder.
// Proposed ones (the agent read a promise): approve or decline.
async function loadReminders({ minSeq } = {}) {
  const [due, proposed] = await Promise.all([
    api("/v1/follow-ups", { params: { status: "due", min_seq: minSeq } }),
    api("/v1/follow-ups", { params: { status: "proposed", min_seq: minSeq } }),
  ]);
  const decide = (f, label, method, path) => el("button", { type: "button", class: method === "POST" ? "secondary" : "quiet", onclick: async () => {
    const accepted = await api(path, { method });
    await loadReminders({ minSeq: accepted.seq });
  } }, label);
  const item = (f, note, ...buttons) => el("li", {},
    el("button", { type: "button", onclick: async () => openConversation(await api(`/v1/conversations/${f.conversation_id}`)) },
      el("strong", {}, f.title || "A conversation"), el("span", { class: "preview" }, note)),
    ...buttons);
  $("conversations").replaceChildren(
    ...due.map((f) => item(f, f.note || "They have not answered yet.", decide(f, "Dismiss", "DELETE", `/v1/follow-ups/${f.follow_up_id}`))),
    ...proposed.map((f) => item(f, `Proposed for ${when(f.due_at)}: ${f.note}`,
      decide(f, "Remind me", "POST", `/v1/follow-ups/${f.follow_up_id}/approve`),
      decide(f, "No need", "DELETE", `/v1/follow-ups/${f.follow_up_id}`))),
  );
  $("more").hidden = true;
  $("empty").hidden = due.length + proposed.length > 0;
  $("empty").textContent = "No follow-ups due. Set one from a conversation (Follow up…).";
  await showCounts(minSeq);
}

async function showCounts(minSeq) {
  const [me, away] = await Promise.all([api("/v1/me", { params: { min_seq: minSeq } }), api("/v1/away")]);
  showAway(away, me);
  $("waiting-count").hidden = !me.needs_reply;
  $("waiting-count").textContent = String(me.needs_reply || "");
  $("reminders-count").hidden = !me.follow_ups_due;
  $("reminders-count").textContent = String(me.follow_ups_due || "");
}

async function loadConversations({ append = false, minSeq } = {}) {
  if (state.view === "reminders") return loadReminders({ minSeq });
  if (state.view === "digest") return loadDigest({ minSeq });
  const since = $("since-filter").value;
  const waiting = (state.view || "waiting") === "waiting";
  const params = {
    limit: 50,
    min_seq: minSeq,
    needs_reply: waiting ? "true" : undefined,
    unread: $("unread-only").checked ? "true" : undefined,
    pinned: $("pinned-only").checked ? "true" : undefined,
    channel: $("channel-filter").value || undefined,
    person: $("person-filter").value.trim() || undefined,
    active_since: since ? new Date(`${since}T00:00:00`).toISOString() : undefined,
  };
  if (append) params.cursor = state.cursor;
  const page = await api("/v1/conversations", { params });
  state.cursor = page.next_cursor;
  const list = $("conversations");
  if (!append) list.replaceChildren();
  for (const c of page.items) list.append(conversationItem(c));
  $("more").hidden = !page.next_cursor;
  $("empty").hidden = list.children.length > 0;
  $("empty").textContent = waiting
    ? "Nothing waits for a reply. \"All\" shows every conversation."
    : "No conversations yet. They appear here as soon as a connected channel receives a message.";
  await showCounts(minSeq);
}

async function openConversation(c) {
  state.current = c.conversation_id;
  document.body.classList.add("reading"); // on a phone the conversation takes the screen
  $("results").hidden = true;
  const pane = $("conversation");
  const modes = { auto: "answers", draft: "drafts for you", off: "is off" };
  const mode = el("select", {
    id: "agent-mode",
    onchange: async (change) => {
      const chosen = change.target.value;
      change.target.dataset.chosen = chosen; // until the inbox shows it, a refresh must not undo it
      const accepted = await api(`/v1/conversations/${c.conversation_id}`, { method: "PATCH", body: { agent_mode: chosen } });
      status(`Here the agent ${modes[chosen]}.`);
      await showAgentState(c.conversation_id, accepted.seq);
    },
  }, ...Object.entries(modes).map(([value, label]) => el("option", { value, ...(c.agent_mode === value ? { selected: "" } : {}) }, `Agent ${label}`)));
  const toggle = el("label", {}, el("span", { class: "sr-only" }, "Agent in this conversation"), mode);
  const patch = async (body, done) => {
    const accepted = await api(`/v1/conversations/${c.conversation_id}`, { method: "PATCH", body });
    status(done);
    await loadConversations({ minSeq: accepted.seq });
  };
  const pin = el("button", { type: "button", class: "secondary", onclick: () => patch({ pinned: !c.pinned }, c.pinned ? "Unpinned." : "Pinned: it stays on top.") }, c.pinned ? "Unpin" : "Pin");
  const unread = el("button", { type: "button", class: "secondary", onclick: () => patch({ read: false }, "Marked unread.") }, "Mark unread");
  const followUp = el("select", {
    "aria-label": "Follow up",
    class: "follow-up",
    onchange: async (change) => {
      const choice = change.target.value;
      change.target.value = "";
      const due = { "2d": 2 * 86400_000, "1w": 7 * 86400_000, "1h": 3600_000 }[choice];
      if (!due) return;
      const dueAt = new Date(Date.now() + due).toISOString();
      const accepted = await api(`/v1/conversations/${c.conversation_id}/follow-ups`, { method: "POST", body: { due_at: dueAt, only_if_no_reply: true } });
      status(`You will be reminded ${new Date(dueAt).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" })} if they have not answered.`);
      await showCounts(accepted.seq);
    },
  }, el("option", { value: "" }, "Follow up…"), el("option", { value: "1h" }, "in 1 hour if no answer"),
  el("option", { value: "2d" }, "in 2 days if no answer"), el("option", { value: "1w" }, "in a week if no answer"));
  const snooze = el("select", {
    "aria-label": "Snooze",
    class: "snooze",
    onchange: async (change) => {
      const until = snoozeUntil(change.target.value);
      change.target.value = "";
      if (until === undefined) return;
      const accepted = await api(`/v1/conversations/${c.conversation_id}/snooze`, { method: "POST", body: { until } });
      status(until ? `Snoozed until ${new Date(until).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" })}, or until they write.` : "Back in Needs reply.");
      await loadConversations({ minSeq: accepted.seq });
    },
  }, el("option", { value: "" }, "Snooze…"), el("option", { value: "1h" }, "1 hour"), el("option", { value: "3h" }, "3 hours"),
  el("option", { value: "tomorrow" }, "Tomorrow 9:00"), el("option", { value: "monday" }, "Monday 9:00"),
  ...(c.snoozed_until && new Date(c.snoozed_until) > new Date() ? [el("option", { value: "none" }, "Unsnooze")] : []));
  const compose = el(
    "form",
    { class: "compose", onsubmit: (submit) => sendMessage(submit, c.conversation_id) },
    el("label", { class: "sr-only", for: "compose-text" }, "Reply"),
    el("textarea", { id: "compose-text", name: "text", maxlength: "4000", placeholder: `Reply on ${c.channel}…`, required: "" }),
    el("label", { class: "later" }, "Send later ", el("input", { type: "datetime-local", name: "send_at", "aria-label": "Send later at" })),
    el("button", { type: "submit" }, "Send"),
  );
  compose.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey) {
      key.preventDefault();
      compose.requestSubmit();
    }
  });
  pane.replaceChildren(
    el("header", {},
      el("button", { type: "button", class: "secondary back", onclick: () => document.body.classList.remove("reading") }, "← Conversations"),
      el("h2", {}, c.title), el("span", { class: "badge" }, c.channel), toggle, pin, unread, snooze, followUp,
      el("button", { type: "button", class: "secondary", onclick: () => showBrief(c) }, "Summary"),
      c.contact_id ? el("button", { type: "button", class: "secondary", onclick: () => showPerson(c.contact_id) }, "Person") : ""),
    el("section", { id: "person", class: "notice", hidden: "", "aria-label": "Person" }),
    el("section", { id: "brief", class: "notice", hidden: "", "aria-label": "Summary" }),
    el("p", { id: "agent-paused", class: "notice", hidden: "" }),
    el("p", { id: "wants-to-talk", class: "notice", hidden: "" }),
    el("ol", { id: "messages", class: "messages" }),
    el("section", { id: "drafts", "aria-label": "Drafts of the agent" }),
    compose,
  );
  showPaused(c);
  showSender(c);
  await Promise.all([loadMessages(c.conversation_id), loadDrafts(c.conversation_id)]);
  if (c.unread_count) {
    const accepted = await api(`/v1/conversations/${c.conversation_id}`, { method: "PATCH", body: { read: true } });
    await loadConversations({ minSeq: accepted.seq });
  }
}

// Who this is across channels: their identities, conversations, your notes, and who else may
// be them (same phone or e-mail), to merge with one click.
async function showPerson(contactId, minSeq) {
  const box = $("person");
  box.hidden = false;
  const person = await api(`/v1/contacts/${contactId}`, { params: { min_seq: minSeq } });
  const notes = el("textarea", { "aria-label": "Notes on this person", maxlength: "2000", rows: "2" });
  notes.value = person.notes;
  const save = el("button", { type: "button", class: "secondary", onclick: async () => {
    const accepted = await api(`/v1/contacts/${contactId}/notes`, { method: "PUT", body: { notes: notes.value } });
    status("Notes kept.");
    await showPerson(contactId, accepted.seq);
  } }, "Save notes");
  const merge = (s) => el("button", { type: "button", class: "link", onclick: async () => {
    const accepted = await api(`/v1/contacts/${contactId}/merge`, { method: "POST", body: { contact_id: s.contact_id } });
    status(`Merged: ${s.display_name} is this person too.`);
    await showPerson(contactId, accepted.seq);
  } }, "Same person: merge");
  const words = el("input", { type: "search", "aria-label": `Search what ${person.display_name} said`, placeholder: "Search their messages" });
  const find = el("form", { role: "search" }, words);
  find.addEventListener("submit", (submit) => {
    submit.preventDefault();
    searchMessages(words.value.trim(), person).catch((error) => status(error.message));
  });
  box.replaceChildren(
    el("strong", {}, person.display_name),
    el("p", { class: "muted" }, `On ${[...new Set(person.identities.map((i) => i.channel))].join(", ")} · ${person.conversations.length} conversation(s)`),
    find, notes, save,
    ...person.suggestions.map((s) => el("p", {}, `Maybe also ${s.display_name} (${s.reason}) · `, merge(s))),
  );
}

// The conversation at a glance: a summary and its action items, each a follow-up in one click.
async function showBrief(c) {
  const box = $("brief");
  box.hidden = false;
  box.replaceChildren("Summarising…");
  const brief = await api(`/v1/conversations/${c.conversation_id}/summary`);
  const items = brief.action_items.map((item) => el("li", {}, item.text, item.due ? el("span", { class: "muted" }, ` (${item.due})`) : "", " ",
    el("button", { type: "button", class: "link", onclick: async () => {
      const due = item.due ? new Date(`${item.due}T09:00:00`) : new Date(Date.now() + 86400_000);
      const dueAt = (due > new Date() ? due : new Date(Date.now() + 3600_000)).toISOString();
      await api(`/v1/conversations/${c.conversation_id}/follow-ups`, { method: "POST", body: { due_at: dueAt, note: item.text, only_if_no_reply: false } });
      status(`You will be reminded ${new Date(dueAt).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" })}.`);
    } }, "Remind me")));
  box.replaceChildren(
    el("p", {}, brief.summary || "Nothing to summarise yet."),
    items.length ? el("ul", { class: "plain" }, ...items) : "",
    el("small", { class: "muted" }, brief.model ? `Written by ${brief.model}` : "Extractive (no model)"),
  );
}

// When a snooze ends, on this device's clock (null: lifted now; undefined: nothing chosen).
function snoozeUntil(choice) {
  const at = new Date();
  if (choice === "1h" || choice === "3h") return new Date(at.getTime() + Number(choice[0]) * 3600_000).toISOString();
  if (choice === "tomorrow" || choice === "monday") {
    const days = choice === "tomorrow" ? 1 : ((8 - at.getDay()) % 7) || 7;
    const morning = new Date(at.getFullYear(), at.getMonth(), at.getDate() + days, 9, 0, 0);
    return morning.toISOString();
  }
  if (choice === "none") return null;
  return undefined;
}

// The agent steps back where a person answered: "paused until 14:32 · Resume".
function showPaused(c) {
  const banner = $("agent-paused");
  if (!banner) return;
  const until = c.agent_paused_until ? new Date(c.agent_paused_until) : null;
  banner.hidden = !until || until <= new Date() || c.agent_mode === "off";
  if (banner.hidden) return;
  const resume = el("button", { type: "button", class: "link", onclick: async () => {
    const accepted = await api(`/v1/conversations/${c.conversation_id}/agent/resume`, { method: "POST" });
    status("The agent answers here again.");
    await showAgentState(c.conversation_id, accepted.seq);
  } }, "Resume");
  banner.replaceChildren(`Agent paused until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} · `, resume);
}

// A stranger on a channel that asks for approval: "wants to talk · Approve · Block".
function showSender(c) {
  const notice = $("wants-to-talk");
  if (!notice) return;
  notice.hidden = !c.sender_id || c.sender_status === "approved";
  if (notice.hidden) return;
  const decide = (how, done) => el("button", { type: "button", class: "link", onclick: async () => {
    const path = `/v1/channels/${c.connection_id}/senders/${encodeURIComponent(c.sender_id)}/${how}`;
    const accepted = await api(path, { method: "POST" });
    status(done);
    await showAgentState(c.conversation_id, accepted.seq);
  } }, how === "approve" ? "Approve" : "Block");
  if (c.sender_status === "blocked") {
    notice.replaceChildren("Blocked: the agent does not answer them · ", decide("approve", "Approved: the agent answers them from now on."));
  } else {
    notice.replaceChildren(`${c.title} wants to talk: the agent answers once you approve · `, decide("approve", "Approved: the agent answers them from now on."), " · ", decide("block", "Blocked: the agent will not answer them."));
  }
}

async function showAgentState(conversationId, minSeq) {
  if (conversationId !== state.current) return;
  const c = await api(`/v1/conversations/${conversationId}`, { params: { min_seq: minSeq } });
  const select = $("agent-mode");
  if (select && (!select.dataset.chosen || select.dataset.chosen === c.agent_mode)) {
    delete select.dataset.chosen;
    select.value = c.agent_mode;
  }
  showPaused(c);
  showSender(c);
}

function draftItem(draft) {
  const box = el("textarea", { "aria-label": "Draft", maxlength: "4000", readonly: "" });
  box.value = draft.text;
  const act = async (how) => {
    try {
      const accepted = how === "send"
        ? await api(`/v1/drafts/${draft.draft_id}/send`, { method: "POST", body: { text: box.value } })
        : await api(`/v1/drafts/${draft.draft_id}`, { method: "DELETE" });
      status(how === "send" ? "Draft sent." : "Draft discarded.");
      await Promise.all([loadDrafts(draft.conversation_id, accepted.seq), loadMessages(draft.conversation_id, accepted.seq)]);
    } catch (error) {
      status(error.message);
    }
  };
  const why = { offline_model: "the offline model only drafts", injection_suspected: "the message looks like a prompt injection" }[draft.reason] || "this conversation drafts";
  return el("article", { class: "draft", id: `draft-${draft.draft_id}` },
    el("small", {}, `Draft of the agent (${why}) · ${new Date(draft.created_at).toLocaleTimeString()}`),
    draft.flag ? el("p", { class: "flag" }, draft.flag) : "",
    box,
    el("div", { class: "actions" },
      el("button", { type: "button", onclick: () => act("send") }, "Send"),
      el("button", { type: "button", class: "secondary", onclick: () => { box.readOnly = false; box.focus(); } }, "Edit"),
      el("button", { type: "button", class: "secondary", onclick: () => act("discard") }, "Discard")));
}

async function loadDrafts(conversationId, minSeq) {
  const drafts = await api(`/v1/conversations/${conversationId}/drafts`, { params: { min_seq: minSeq } });
  const section = $("drafts");
  if (section && conversationId === state.current) section.replaceChildren(...drafts.map(draftItem));
}

function messageItem(m) {
  const when = new Date(m.sent_at).toLocaleString();
  const body = m.deleted_at ? el("em", {}, "deleted") : text(m.text);
  const delivery = { pending: " · sending…", failed: " · not sent", delivered: " · delivered", read: " · read", scheduled: " · scheduled", cancelled: " · called off" }[m.status] || "";
  // A scheduled message waits for its time: it can be called off until then.
  const callOff = m.status === "scheduled" ? el("button", { type: "button", class: "link", onclick: async () => {
    try {
      const accepted = await api(`/v1/messages/${m.message_id}`, { method: "DELETE" });
      status("Called off: it will not be sent.");
      await loadMessages(m.conversation_id, accepted.seq);
    } catch (error) {
      status(error.message);
    }
  } }, "Call off") : "";
  const token = encodeURIComponent(state.session.access_token);
  const media = (m.media || []).map((item) => item.mime.startsWith("image/")
    ? el("img", { class: "media", src: `${item.url}?access_token=${token}`, alt: "Photo", loading: "lazy" })
    : el("a", { href: `${item.url}?access_token=${token}` }, `Attachment (${Math.ceil(item.size / 1024)} KB)`));
  const counts = {};
  for (const r of m.reactions || []) counts[r.emoji] = (counts[r.emoji] || 0) + 1;
  const reactions = Object.keys(counts).length
    ? el("span", { class: "reactions" }, Object.entries(counts).map(([emoji, n]) => (n > 1 ? `${emoji} ${n}` : emoji)).join(" "))
    : "";
  return el("li", { class: `msg ${m.direction} ${m.status}`, id: `m-${m.message_id}` }, ...media, body, reactions, el("small", {}, `${m.sender_name} · ${when}${m.edited_at ? " · edited" : ""}${delivery} `, callOff));
}

async function sendMessage(submit, conversationId) {
  submit.preventDefault();
  const box = submit.target.elements.text;
  const value = box.value.trim();
  if (!value) return;
  // One key per message typed: a retried request (flaky network) never sends twice.
  const key = submit.target.dataset.key || crypto.randomUUID();
  submit.target.dataset.key = key;
  const later = submit.target.elements.send_at?.value;
  try {
    const accepted = await api("/v1/messages", {
      method: "POST",
      body: { conversation_id: conversationId, text: value, ...(later ? { send_at: new Date(later).toISOString() } : {}) },
      headers: { "Idempotency-Key": key },
    });
    delete submit.target.dataset.key;
    box.value = "";
    if (later) {
      submit.target.elements.send_at.value = "";
      status(`Scheduled for ${new Date(later).toLocaleString()}.`);
    }
    await loadMessages(conversationId, accepted.seq);
  } catch (error) {
    status(`Not sent: ${error.message}`);
  }
}

async function loadMessages(conversationId, minSeq) {
  const page = await api(`/v1/conversations/${conversationId}/messages`, { params: { limit: 100, min_seq: minSeq } });
  const list = $("messages");
  if (list) list.replaceChildren(...page.items.map(messageItem));
}

$("more").addEventListener("click", () => loadConversations({ append: true }));
$("view-waiting").addEventListener("click", () => chooseView("waiting"));
$("view-all").addEventListener("click", () => chooseView("all"));
$("view-reminders").addEventListener("click", () => chooseView("reminders"));
$("view-digest").addEventListener("click", () => chooseView("digest"));
for (const id of ["unread-only", "pinned-only", "channel-filter", "since-filter"]) {
  $(id).addEventListener("change", () => loadConversations());
}
let personTyping = null;
$("person-filter").addEventListener("input", () => {
  clearTimeout(personTyping);
  personTyping = setTimeout(() => loadConversations(), 250);
});

$("search-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  await searchMessages($("search").value.trim());
});

// Full-text search, in every conversation or in one person's (on every channel).
async function searchMessages(q, person) {
  const results = $("results");
  if (!q) {
    results.hidden = true;
    return;
  }
  const hits = await api("/v1/search", { params: { q, contact_id: person ? person.contact_id : undefined } });
  results.hidden = false;
  const whose = person ? ` with ${person.display_name}` : "";
  results.replaceChildren(el("h2", {}, `${hits.length} result${hits.length === 1 ? "" : "s"} for “${q}”${whose}`));
  for (const hit of hits) {
    const line = el("p", {});
    line.innerHTML = hit.highlight; // escaped by the server; only <mark> is markup
    results.append(el("article", { class: "msg" }, el("small", {}, `${hit.conversation_title} · ${hit.sender_name}`), line));
  }
}

// --- live updates --------------------------------------------------------------------------

let pending = null;
function follow(since) {
  if (state.events) state.events.close();
  const url = new URL("/v1/events", location.origin);
  url.searchParams.set("access_token", state.session.access_token);
  if (since) url.searchParams.set("since", since);
  const source = new EventSource(url);
  state.events = source;
  const onEvent = (message) => {
    state.lastSeq = Number(message.lastEventId);
    const event = JSON.parse(message.data);
    if (event.type.startsWith("message.") && event.aggregate_id === state.current) {
      clearTimeout(pending);
      pending = setTimeout(() => loadMessages(state.current), 50);
    }
    if (event.aggregate_id === state.current && (event.type.startsWith("message.draft") || event.type === "message.send_requested")) {
      loadDrafts(state.current, state.lastSeq).catch(() => {});
    }
    if (event.aggregate_id === state.current && event.type.startsWith("conversation.")) {
      showAgentState(state.current, state.lastSeq).catch(() => {});
    }
    if (event.type.startsWith("connection.") && !$("channels").hidden) loadChannels({ minSeq: state.lastSeq }).catch(() => {});
    if (event.type.startsWith("connection.sender_") && state.current) showAgentState(state.current, state.lastSeq).catch(() => {});
    if ((event.type === "plan.changed" || event.type === "billing.subscription_changed") && !$("usage").hidden) loadUsage().catch(() => {});
    if (event.type === "plan.changed" || event.type === "agent.run_failed") checkAllowance().catch(() => {});
    if ((event.type.startsWith("device.") || event.type.startsWith("connection.")) && !$("bridge").hidden) {
      loadDevices({ minSeq: state.lastSeq }).catch(() => {});
    }
    if (event.type.startsWith("message.") || event.type.startsWith("conversation.") || event.type.startsWith("reminder.") || event.type.startsWith("tenant.away")) {
      loadConversations({ minSeq: state.lastSeq }).catch(() => {});
    }
    liveStatus(`Live · last event ${state.lastSeq}`);
  };
  source.addEventListener("agent.delta", (message) => showTyping(JSON.parse(message.data)));
  source.addEventListener("channel.qr", (message) => {
    const code = JSON.parse(message.data);
    const item = document.querySelector(`.qr[data-connection="${code.connection_id}"]`)?.parentElement;
    if (item && !$("channels").hidden) showPairingCode(item, code.connection_id).catch(() => {});
  });
  source.addEventListener("media.available", onEvent);
  for (const type of ["message.received", "message.send_requested", "message.send_released", "message.send_cancelled", "message.sent", "message.send_failed", "message.status_changed", "message.edited", "message.deleted", "message.draft_proposed", "message.draft_discarded", "conversation.created", "conversation.updated", "conversation.snoozed", "reminder.due", "reminder.scheduled", "reminder.proposed", "reminder.cancelled", "tenant.away_set", "tenant.away_ended", "conversation.agent_paused", "conversation.agent_resumed", "connection.created", "connection.state_changed", "connection.deleted", "connection.sender_requested", "connection.sender_approved", "connection.sender_blocked", "device.paired", "device.state_changed", "device.revoked", "plan.changed", "billing.subscription_changed", "agent.run_failed"]) {
    source.addEventListener(type, onEvent);
  }
  source.onerror = () => {
    // The browser reconnects by itself and sends Last-Event-ID: nothing is missed.
    status("Reconnecting…");
  };
}

// An agent's reply while it is written: a bubble that grows until the message itself arrives.
function showTyping(delta) {
  if (delta.conversation_id !== state.current) return;
  const list = $("messages");
  if (!list) return;
  let bubble = document.getElementById(`typing-${delta.run_id}`);
  if (!bubble) {
    bubble = el("li", { class: "msg out typing", id: `typing-${delta.run_id}` }, "");
    list.prepend(bubble); // the list is newest first
  }
  bubble.textContent += delta.delta;
}

// --- agent settings and live preview ----------------------------------------------------------

let currentAgent = null;

async function loadAgent() {
  const [agents, templates] = await Promise.all([api("/v1/agents"), api("/v1/agents/templates")]);
  currentAgent = agents[0] || null;
  state.templates = templates;
  const select = $("agent-template");
  select.replaceChildren(...templates.map((t) => el("option", { value: t.template }, t.name + " — " + t.template.replace("_", " "))));
  if (currentAgent) fillAgentForm(currentAgent);
  await loadMemory();
}

// What the agent remembers: its proposals wait for Approve / Forget; approved facts reach it.
async function loadMemory({ minSeq } = {}) {
  const [proposed, approved] = await Promise.all([
    api("/v1/memory/facts", { params: { status: "proposed", min_seq: minSeq } }),
    api("/v1/memory/facts", { params: { status: "approved", min_seq: minSeq } }),
  ]);
  const decide = (fact, how) => el("button", { type: "button", class: how === "approve" ? "secondary" : "quiet", onclick: async () => {
    const accepted = how === "approve"
      ? await api(`/v1/memory/facts/${fact.fact_id}/approve`, { method: "POST", body: {} })
      : await api(`/v1/memory/facts/${fact.fact_id}`, { method: "DELETE" });
    await loadMemory({ minSeq: accepted.seq });
  } }, how === "approve" ? "Approve" : "Forget");
  $("memory-proposed").replaceChildren(...proposed.map((fact) => el("li", {}, el("span", { class: "badge" }, "asks"), ` ${fact.text} `, decide(fact, "approve"), decide(fact, "forget"))));
  $("memory-approved").replaceChildren(...approved.map((fact) => el("li", {}, fact.text, fact.conversation_id ? el("span", { class: "muted" }, " (one conversation)") : "", " ", decide(fact, "forget"))));
  if (!proposed.length && !approved.length) $("memory-approved").append(el("li", { class: "muted" }, "Nothing remembered yet."));
}

function fillAgentForm(agent) {
  const form = $("agent-form").elements;
  form.name.value = agent.name;
  form.model.value = agent.model;
  form.system_prompt.value = agent.system_prompt;
  form.template.value = agent.template || "personal_assistant";
  for (const box of form.tools) box.checked = agent.tools.includes(box.value);
  form.channels.value = (agent.rules.channels || []).join(", ");
  form.groups_require_mention.checked = agent.rules.groups_require_mention !== false;
  const quiet = agent.rules.quiet_hours;
  form.quiet_from.value = quiet ? quiet[0] : "";
  form.quiet_to.value = quiet ? quiet[1] : "";
  form.enabled.checked = agent.enabled;
  form.cross_channel_memory.checked = Boolean(agent.rules.cross_channel_memory);
}

function agentBody() {
  const form = $("agent-form").elements;
  const hours = [form.quiet_from.value, form.quiet_to.value];
  return {
    name: form.name.value,
    model: form.model.value,
    system_prompt: form.system_prompt.value,
    tools: [...form.tools].filter((box) => box.checked).map((box) => box.value),
    rules: {
      channels: form.channels.value.split(",").map((c) => c.trim()).filter(Boolean),
      groups_require_mention: form.groups_require_mention.checked,
      quiet_hours: hours.every((h) => h !== "") ? hours.map(Number) : null,
      cross_channel_memory: form.cross_channel_memory.checked,
      // not on the form: kept as they are (the rules are replaced as a whole)
      allowed_senders: currentAgent?.rules.allowed_senders || [],
      inbox_search_senders: currentAgent?.rules.inbox_search_senders || [],
    },
    enabled: form.enabled.checked,
  };
}

$("agent-template").addEventListener("change", (change) => {
  const template = (state.templates || []).find((t) => t.template === change.target.value);
  if (!template) return;
  const form = $("agent-form").elements;
  form.name.value = template.name;
  form.system_prompt.value = template.system_prompt;
  for (const box of form.tools) box.checked = template.tools.includes(box.value);
});

$("agent-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  if (!currentAgent) return;
  try {
    const body = { ...agentBody(), template: $("agent-template").value };
    const accepted = await api(`/v1/agents/${currentAgent.agent_id}`, { method: "PUT", body });
    const agents = await api("/v1/agents", { params: { min_seq: accepted.seq } });
    currentAgent = agents.find((a) => a.agent_id === currentAgent.agent_id);
    $("agent-saved").textContent = "Saved.";
  } catch (error) {
    $("agent-saved").textContent = error.message;
  }
});

$("memory-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const input = $("memory-text");
  try {
    const accepted = await api("/v1/memory/facts", { method: "POST", body: { text: input.value } });
    input.value = "";
    await loadMemory({ minSeq: accepted.seq });
  } catch (error) {
    status(error.message);
  }
});

$("preview-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  if (!currentAgent) return;
  const answer = $("preview-answer");
  answer.textContent = "";
  const response = await fetch(`/v1/agents/${currentAgent.agent_id}/test`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.session.access_token}` },
    body: JSON.stringify({ text: $("preview-text").value, config: agentBody() }),
  });
  if (!response.ok) {
    answer.textContent = (await response.json()).detail;
    return;
  }
  // Server-Sent Events over fetch: "event: delta" lines carry the answer as it is written.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n"); // the server separates lines with CRLF
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = (block.match(/^event: ?(.*)$/m) || [])[1];
      const data = (block.match(/^data: ?(.*)$/m) || [])[1];
      if (!data) continue;
      const payload = JSON.parse(data);
      if (name === "delta") answer.textContent += payload.text;
      if (name === "done") $("agent-model-note").textContent = payload.offline ? "Answered by the built-in offline model: the server has no Anthropic key (MOLTBOT_ANTHROPIC_API_KEY)." : `Answered by ${payload.model}.`;
      if (name === "error") answer.textContent = payload.detail;
    }
  }
});

// --- try it: the tenant's own website chat, as a visitor --------------------------------------

$("try-it").addEventListener("click", async () => {
  const panel = $("try-panel");
  const opening = panel.hidden;
  panel.hidden = !opening;
  document.body.classList.toggle("trying", opening);
  $("try-it").setAttribute("aria-expanded", String(opening));
  if (opening && !$("try-frame").getAttribute("src")) {
    try {
      const widget = await api("/v1/webchat");
      $("try-frame").setAttribute("src", widget.preview_url);
      $("try-link").setAttribute("href", widget.widget_url);
    } catch (error) {
      status(error.message);
    }
  }
});

// --- channels and usage -----------------------------------------------------------------------

// "Add to Slack" and "Add to server" (Discord). The answer also sets an HttpOnly cookie
// (same-origin fetch) that binds the install to this browser; the provider brings the
// browser back to the callback, which asks to confirm.
for (const [button, kind] of [["add-to-slack", "slack"], ["add-to-discord", "discord"]]) {
  $(button).addEventListener("click", async () => {
    const start = await api(`/v1/channels/${kind}/install`);
    location.assign(start.url);
  });
}

// A button that asks, DELETEs `path`, then reloads its list.
function deleteButton(label, question, path, reload) {
  return el("button", {
    class: "quiet",
    onclick: async () => {
      if (!confirm(question)) return;
      await api(path, { method: "DELETE" });
      reload();
    },
  }, label);
}

async function loadChannels({ minSeq } = {}) {
  // "Add to Slack" / "Add to server" appear when this deployment has that app configured.
  // HEAD starts no install (a GET would, replacing the cookie of one in progress in another tab).
  for (const [button, kind] of [["add-to-slack", "slack"], ["add-to-discord", "discord"]]) {
    fetch(`/v1/channels/${kind}/install`, { method: "HEAD", headers: { Authorization: `Bearer ${state.session.access_token}` } })
      .then((response) => { $(button).hidden = !response.ok; })
      .catch(() => {});
  }
  // As of the event that asked for it: the read model may not have it yet.
  const channels = await api("/v1/channels", { params: { min_seq: minSeq } });
  const list = $("channel-list");
  list.replaceChildren();
  if (!channels.length) list.append(el("li", { class: "muted" }, "No channels connected yet."));
  for (const c of channels) {
    const remove = c.channel === "webchat" ? "" : deleteButton("Remove", `Remove ${c.display_name}? Its conversations stay in your inbox.`, `/v1/channels/${c.connection_id}`, loadChannels);
    const where = c.mode === "bridge" ? el("span", { class: "muted" }, " · on your bridge") : "";
    const item = el("li", {}, el("span", { class: "badge" }, c.channel), el("strong", {}, c.display_name), where, ` — ${c.state}`, c.state_message ? el("span", { class: "muted" }, ` (${c.state_message})`) : "", c.channel === "webchat" ? "" : dmPolicySelect(c), remove);
    list.append(item);
    if (PAIRING_CODES.includes(c.state_code)) showPairingCode(item, c.connection_id).catch(() => {});
  }
  loadSignalDevices().catch(() => {});
}

// Signal runs on a paired device whose bridge offers it: those are the choices.
async function loadSignalDevices() {
  const { items } = await api("/v1/devices");
  const hosts = items.filter((d) => d.state !== "revoked" && d.capabilities.includes("signal.read"));
  const select = $("signal-device");
  select.replaceChildren(...hosts.map((d) => el("option", { value: d.device_id }, `${d.name} (${d.state})`)));
  select.disabled = !hosts.length;
  $("signal-form").querySelector("button").disabled = !hosts.length;
  if (!hosts.length) $("signal-result").textContent = "No computer offers Signal yet: pair one on the Bridge page and start moltbot bridge run on it.";
  else if ($("signal-result").textContent.startsWith("No computer")) $("signal-result").textContent = "";
}

$("signal-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const result = $("signal-result");
  result.textContent = "Asking the bridge to start Signal…";
  try {
    const accepted = await api("/v1/channels/signal/connect", { method: "POST", body: { device_id: submit.target.elements.device_id.value } });
    result.textContent = "A QR code appears above in a moment: scan it with Signal on your phone (Settings → Linked devices).";
    await api("/v1/channels", { params: { min_seq: accepted.seq } });
    loadChannels();
  } catch (error) {
    result.textContent = error.message;
  }
});

// Who the agent answers in a channel's direct messages: anyone, people approved after it sent
// them a code, or only people approved.
const DM_POLICIES = { open: "answers anyone", pairing: "asks strangers for a code", allowlist: "answers approved people only" };
function dmPolicySelect(c) {
  const select = el("select", {
    "aria-label": `Who the agent answers on ${c.display_name}`,
    class: "dm-policy",
    onchange: async (change) => {
      await api(`/v1/channels/${c.connection_id}`, { method: "PATCH", body: { dm_policy: change.target.value } });
      status(`On ${c.display_name} the agent ${DM_POLICIES[change.target.value]}.`);
    },
  }, ...Object.entries(DM_POLICIES).map(([value, label]) => el("option", { value, ...((c.dm_policy || "open") === value ? { selected: "" } : {}) }, `DMs: ${label}`)));
  return select;
}

// A channel that links with a phone (WhatsApp, Signal) shows its code while it asks for one;
// the codes rotate, and each new one arrives on the event stream (channel.qr) too.
const PAIRING_CODES = ["qr_required", "pair_code_required", "link_required"];
async function showPairingCode(item, connectionId) {
  let code;
  try {
    code = await api(`/v1/channels/${connectionId}/qr`);
  } catch (error) {
    return; // no code right now (it expired, or the channel is paired): its state says why
  }
  const box = el("div", { class: "qr", "data-connection": connectionId });
  const app = { whatsapp: "WhatsApp", signal: "Signal" }[item.querySelector(".badge")?.textContent] || "the app";
  if (code.kind === "qr") box.append(el("img", { src: code.image, alt: `QR code to scan with ${app} on your phone` }));
  else box.append(el("p", {}, "Type this code on your phone: ", el("strong", { class: "code" }, code.code)));
  box.append(el("small", { class: "muted" }, `Valid until ${new Date(code.expires_at).toLocaleTimeString()}.`));
  const old = item.querySelector(".qr");
  if (old) old.replaceWith(box);
  else item.append(box);
}

$("whatsapp-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const result = $("whatsapp-result");
  const phone = submit.target.elements.phone_number.value.trim();
  result.textContent = "Starting WhatsApp…";
  try {
    const accepted = await api("/v1/channels/whatsapp/connect", { method: "POST", body: phone ? { mode: "cloud", phone_number: phone } : { mode: "cloud" } });
    submit.target.reset();
    result.textContent = phone ? "A code to type on your phone appears above in a moment." : "A QR code appears above in a moment: scan it with WhatsApp.";
    await api("/v1/channels", { params: { min_seq: accepted.seq } });
    loadChannels();
  } catch (error) {
    result.textContent = error.message;
  }
});

// Channels connected by pasting their token(s): the provider checks them, then the list shows the channel.
const TOKEN_CHANNELS = [
  {
    channel: "telegram",
    checking: "Checking the token with Telegram…",
    body: (form) => ({ bot_token: form.bot_token.value }),
    tryIt: "Write to it in Telegram to try it.",
  },
  {
    channel: "discord",
    checking: "Checking the token with Discord…",
    body: (form) => ({ bot_token: form.bot_token.value.trim() }),
    tryIt: "Mention it in your server to try it.",
  },
  {
    channel: "slack",
    checking: "Checking the tokens with Slack…",
    body: (form) => ({ bot_token: form.bot_token.value.trim(), app_token: form.app_token.value.trim() }),
    tryIt: "Mention the app in a channel to try it.",
  },
  {
    channel: "teams",
    checking: "Checking the app with Microsoft…",
    body: (form) => {
      const fields = { app_id: form.app_id.value.trim(), client_secret: form.client_secret.value.trim() };
      if (form.tenant_id.value.trim()) fields.tenant_id = form.tenant_id.value.trim();
      return fields;
    },
    // Azure must be told where to post: the connection's own messaging endpoint.
    tryIt: (accepted) => accepted.webhook_url
      ? `Now, in Azure, set the bot's Messaging endpoint to ${accepted.webhook_url} and write to it in Teams.`
      : "Set MOLTBOT_PUBLIC_URL so Teams can reach this inbox, then connect again.",
  },
];

for (const { channel, checking, body, tryIt } of TOKEN_CHANNELS) {
  $(`${channel}-form`).addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const result = $(`${channel}-result`);
    result.textContent = checking;
    try {
      const accepted = await api(`/v1/channels/${channel}/connect`, { method: "POST", body: body(submit.target.elements) });
      submit.target.reset();
      result.textContent = `Connected ${accepted.display_name}. ${typeof tryIt === "function" ? tryIt(accepted) : tryIt}`;
      await api("/v1/channels", { params: { min_seq: accepted.seq } });
      loadChannels();
    } catch (error) {
      result.textContent = error.message;
    }
  });
}

// --- the Personal Bridge: pairing and devices -------------------------------------------------

let pairingDevices = null; // the device ids known when a code was made: a new one means "paired"
let devicesAsked = 0; // events come in bursts: only the newest answer is shown, never an older one after it

async function loadDevices({ minSeq } = {}) {
  const ticket = ++devicesAsked;
  const { items } = await api("/v1/devices", { params: minSeq ? { min_seq: minSeq } : {} });
  if (ticket !== devicesAsked) return;
  const list = $("device-list");
  list.replaceChildren();
  if (!items.length) list.append(el("li", { class: "muted" }, "No device paired yet."));
  for (const d of items) {
    const revoke = d.state === "revoked" ? "" : deleteButton("Revoke", `Revoke ${d.name}? The bridge on it stops at once and must be paired again.`, `/v1/devices/${d.device_id}`, loadDevices);
    const channels = d.connections.map((c) => `${c.channel}: ${c.state}${c.state_message ? ` (${c.state_message})` : ""}`).join("; ");
    list.append(el("li", {},
      el("span", { class: "badge" }, d.state), el("strong", {}, d.name),
      el("span", { class: "muted" }, ` ${d.platform} · ${d.capabilities.join(", ") || "nothing offered yet"} · key ${d.fingerprint}`),
      channels ? el("div", { class: "muted" }, channels) : "", revoke));
  }
  if (pairingDevices && items.some((d) => !pairingDevices.has(d.device_id) && d.state !== "revoked")) {
    const paired = items.find((d) => !pairingDevices.has(d.device_id));
    $("pairing-result").textContent = paired.state === "online" ? `${paired.name} is connected.` : `${paired.name} is paired; start it with moltbot bridge run.`;
    if (paired.state === "online") pairingDevices = null;
  }
}

$("pair-device").addEventListener("click", async () => {
  try {
    const { items } = await api("/v1/devices");
    pairingDevices = new Set(items.map((d) => d.device_id));
    const made = await api("/v1/devices/pairing-codes", { method: "POST" });
    $("pairing").hidden = false;
    $("pairing-code").textContent = made.code;
    $("pairing-expiry").textContent = `valid until ${new Date(made.expires_at).toLocaleTimeString()}`;
    $("pairing-command").textContent = `moltbot bridge pair ${made.code} --gateway ${location.origin}`;
    // Parsed as HTML: the inline SVG (no xmlns) lands in the SVG namespace, and no script runs.
    const svg = new DOMParser().parseFromString(made.qr_svg, "text/html").body.firstElementChild;
    $("pairing-qr").replaceChildren(document.importNode(svg, true));
    $("pairing-result").textContent = "Waiting for the device…";
  } catch (error) {
    status(error.message);
  }
});

const LIMIT_NAMES = { cloud_channels: "Channels", bridge_channels: "Channels on your devices", agents: "Agents", seats: "People" };
const dollars = (micros) => `$${(micros / 1e6).toFixed(2)}`;

async function loadUsage() {
  const [billing, rows] = await Promise.all([api("/v1/billing"), api("/v1/usage")]);
  showPlan(billing);
  // Daily bars: messages (in and out) and AI spend, each scaled to its own busiest day.
  const days = {};
  for (const r of rows) {
    const day = (days[r.day] ||= { messages: 0, spend: 0 });
    if (r.metric === "messages_in" || r.metric === "messages_out") day.messages += r.quantity;
    if (r.metric === "cost_micros") day.spend += r.quantity;
  }
  const order = Object.keys(days).sort();
  const most = (key) => Math.max(1, ...order.map((d) => days[d][key]));
  const [topMessages, topSpend] = [most("messages"), most("spend")];
  const bar = (cls, share) => {
    const node = el("div", { class: cls });
    node.style.height = `${50 * share}%`; // through the DOM: the page's CSP allows no inline style
    return node;
  };
  $("usage-chart").replaceChildren(...order.map((d) => el("div", { class: "day", title: `${d}: ${days[d].messages} messages, ${dollars(days[d].spend)} of AI` },
    bar("msgs", days[d].messages / topMessages), bar("spend", days[d].spend / topSpend))));
  if (!order.length) $("usage-chart").append(el("p", { class: "muted" }, "No usage yet."));
  $("usage-rows").replaceChildren(...rows.map((r) => el("tr", {}, el("td", {}, r.day), el("td", {}, r.metric), el("td", {}, String(r.quantity)))));
}

function showPlan(billing) {
  const price = billing.monthly_price_cents ? `$${(billing.monthly_price_cents / 100).toFixed(2)} a month` : "no charge";
  $("plan-name").textContent = `You are on ${billing.name} (${price}).`;
  const sub = billing.subscription;
  let state = billing.billing === "off" ? "Billing is off on this server: an operator changes plans (moltbot tenants set-plan)." : "";
  if (sub && sub.grace_until) state = `Your last payment failed: update your card before ${new Date(sub.grace_until).toLocaleDateString()}, or the inbox goes back to Free.`;
  else if (sub && sub.cancel_at_period_end) state = `Cancelled: ${billing.name} ends on ${new Date(sub.current_period_end).toLocaleDateString()}.`;
  else if (sub && sub.current_period_end) state = `Renews on ${new Date(sub.current_period_end).toLocaleDateString()}.`;
  $("billing-state").textContent = state;
  const offer = billing.plans.find((p) => p.plan === billing.upgrade);
  const upgrade = $("upgrade");
  upgrade.hidden = !offer;
  if (offer) {
    upgrade.textContent = `Upgrade to ${offer.name} ($${(offer.monthly_price_cents / 100).toFixed(2)} a month)`;
    upgrade.disabled = billing.billing === "off";
    upgrade.title = billing.billing === "off" ? "Billing is off on this server" : "";
    upgrade.dataset.plan = offer.plan;
  }
  $("manage-billing").hidden = !(sub && sub.portal);
  $("plan-limits").replaceChildren(...billing.limits.map((l) => {
    const allowed = l.allowed === null ? "no limit" : String(l.allowed);
    const note = l.over ? el("span", { class: "over" }, " over the plan: they keep working; remove some to add others") : "";
    return el("li", { class: l.over ? "over" : "" }, el("span", {}, LIMIT_NAMES[l.limit] || l.limit),
      l.allowed === null ? el("span", { class: "muted" }, "") : el("meter", { min: "0", max: String(Math.max(l.allowed, 1)), value: String(l.used) }),
      el("span", {}, `${l.used} of ${allowed}`, note));
  }));
  const ai = billing.ai;
  $("ai-meter").replaceChildren(ai.allowance_micros === null
    ? `${dollars(ai.spent_this_month_micros)} spent (your own key: not counted against the plan).`
    : el("span", {}, el("meter", { min: "0", max: String(ai.allowance_micros), value: String(ai.spent_this_month_micros) }),
      ` ${dollars(ai.spent_this_month_micros)} of ${dollars(ai.allowance_micros)} included this month`));
}

$("upgrade").addEventListener("click", async (click) => {
  try {
    const checkout = await api("/v1/billing/checkout", { method: "POST", body: { plan: click.target.dataset.plan } });
    location.assign(checkout.url);
  } catch (error) {
    $("billing-result").textContent = error.message;
  }
});

$("manage-billing").addEventListener("click", async () => {
  try {
    location.assign((await api("/v1/billing/portal", { method: "POST" })).url);
  } catch (error) {
    $("billing-result").textContent = error.message;
  }
});

// --- settings: profile, password, two-factor sign-in, sessions, people, inboxes, audit log ------

const MANAGERS = ["owner", "admin"];
const ROLES = ["owner", "admin", "member"];
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const th = (label) => el("th", { scope: "col" }, label);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// A labelled input: its <label for> and the <input>, in one block.
function field(label, attrs) {
  return el("div", { class: "field" }, el("label", { for: attrs.id }, label), el("input", attrs));
}

// A labelled <select> of `options` ([value, text]), `selected` chosen.
function choice(label, attrs, options, selected) {
  const select = el("select", attrs, ...options.map(([value, words]) => el("option", { value, ...(value === selected ? { selected: "" } : {}) }, words)));
  return el("div", { class: "field" }, el("label", { for: attrs.id }, label), select);
}

// One part of the Settings page: a box with a heading.
function part(id, title, ...children) {
  return el("section", { id, class: "part", "aria-labelledby": `${id}-title` }, el("h3", { id: `${id}-title` }, title), ...children);
}

// The line under a form or list that says how an action went.
function outcome(id) {
  return el("p", { id, class: "muted", role: "status" });
}

function say(line, message, isError = false) {
  if (!line) return;
  line.textContent = message;
  line.className = isError ? "error" : "muted";
}

// Run `action` for a button (disabled meanwhile); a failure is said on `line`.
async function act(button, line, action) {
  button.disabled = true;
  say(line, "");
  try {
    await action();
  } catch (error) {
    say(line, error.message, true);
  } finally {
    button.disabled = false;
  }
}

// A form that runs `action(form.elements)` when submitted; a failure is said on `line`.
function actionForm(attrs, children, line, action) {
  const form = el("form", { ...attrs, class: "stack" }, ...children);
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const buttons = [...form.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    say(line, "");
    try {
      await action(form.elements);
    } catch (error) {
      say(line, error.message, true);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  });
  return form;
}

// Fill one part of the page; when it cannot load, say why in its place.
function load(boxId, render) {
  return render().catch((error) => {
    const box = $(boxId);
    if (box) box.replaceChildren(el("p", { class: "error" }, error.message));
  });
}

let settingsOpened = 0; // only the newest opening fills the page

async function showSettings() {
  const ticket = ++settingsOpened;
  const body = $("settings-body");
  body.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    if (ticket === settingsOpened) body.replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  if (ticket !== settingsOpened || $("settings").hidden) return;
  state.me = me;
  const manager = MANAGERS.includes(me.role);
  body.replaceChildren(
    profilePart(me),
    passwordPart(),
    part("settings-2fa", "Two-factor sign-in", el("div", { id: "two-factor" })),
    part("settings-sessions", "Sessions",
      el("p", { class: "muted" }, "Where your account is signed in. Signing out a device ends its session at once."),
      el("div", { id: "sessions" })),
    part("settings-people", "People", el("div", { id: "people" })),
    inboxesPart(me),
    manager ? part("settings-audit", "Audit log",
      el("p", { class: "muted" }, "Sign-ins, security changes and changes to the inbox's people, newest first."),
      el("div", { id: "audit" })) : "",
    notificationsPart(me),
    manager ? part("settings-away", "Away", el("div", { id: "away" })) : "",
    me.role === "owner" ? exportPart() : "",
    deletePart(me),
  );
  await Promise.all([
    load("two-factor", renderTwoFactor),
    load("sessions", renderSessions),
    load("people", renderPeople).then(() => (manager ? load("audit", renderAudit) : null)),
    manager ? load("away", () => renderAway()) : null,
  ]);
}

// Away: until when, with what message, on which channels; or back now.
async function renderAway(minSeq) {
  const [away, channels] = await Promise.all([api("/v1/away", { params: { min_seq: minSeq } }), api("/v1/channels")]);
  const line = outcome("away-result");
  if (away.on) {
    const back = el("button", { type: "button", class: "secondary", onclick: (click) => act(click.target, line, async () => {
      const accepted = await api("/v1/away", { method: "DELETE" });
      await load("away", () => renderAway(accepted.seq));
      await showCounts(accepted.seq);
    }) }, "I'm back");
    $("away").replaceChildren(el("p", {}, `Away until ${when(away.away.until)} (${away.away.mode === "draft" ? "drafts" : "answers"}): “${away.away.message}”.`),
      el("p", { class: "muted" }, `So far ${plural(away.while_away.received, "message")} in ${plural(away.while_away.conversations, "conversation")}.`), back, line);
    return;
  }
  const boxes = channels.map((c) => el("label", { class: "filter" },
    el("input", { type: "checkbox", name: "away_channel", value: c.connection_id, checked: "" }), ` ${c.display_name} (${c.channel})`));
  const form = actionForm({ id: "away-form" }, [
    field("Away until", { id: "away-until", name: "until", type: "datetime-local", required: "" }),
    field("Away message", { id: "away-message", name: "message", maxlength: "1000", value: "I'm away at the moment and will answer when I'm back." }),
    choice("It is", { id: "away-mode", name: "mode" }, [["answer", "sent to each person once"], ["draft", "a draft for you to send"]], "answer"),
    el("fieldset", {}, el("legend", {}, "On these channels"), ...boxes),
    el("p", { class: "muted" }, "While away, notifications wait; when you are back one tells you what came in."),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Go away")),
  ], line, async (fields) => {
    const picked = [...form.querySelectorAll("input[name=away_channel]:checked")].map((box) => box.value);
    const accepted = await api("/v1/away", { method: "PUT", body: {
      until: new Date(fields.until.value).toISOString(), message: fields.message.value, mode: fields.mode.value,
      connection_ids: picked.length === channels.length ? [] : picked,
    } });
    await load("away", () => renderAway(accepted.seq));
    await showCounts(accepted.seq);
  });
  const last = away.away && !away.on
    ? el("p", { class: "muted" }, `Last away until ${when(away.away.ended_at || away.away.until)}: ${plural(away.while_away.received, "message")} came in.`)
    : "";
  $("away").replaceChildren(last, form, line);
}

// --- notifications on this device (push through the service worker), time zone, quiet hours ----

const PUSH_KEY = "moltbot.push"; // {"<tenant>:<user>": subscription id}: this browser's, per inbox
const pushSupported = () => "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
const pushSlot = () => `${state.session.tenant_id}:${state.session.user_id}`;
const pushIds = () => JSON.parse(localStorage.getItem(PUSH_KEY) || "{}");

function keepPushId(id) {
  const ids = pushIds();
  if (id) ids[pushSlot()] = id;
  else delete ids[pushSlot()];
  localStorage.setItem(PUSH_KEY, JSON.stringify(ids));
}

// The browser's push subscription (one per browser, whatever the inbox), made when `create`.
async function browserSubscription(create) {
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  const existing = await registration.pushManager.getSubscription();
  if (existing || !create) return existing;
  const { public_key: key } = await api("/v1/push/key");
  const raw = atob(key.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (key.length % 4)) % 4));
  return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: Uint8Array.from(raw, (c) => c.charCodeAt(0)) });
}

async function turnPushOn() {
  if (Notification.permission !== "granted" && (await Notification.requestPermission()) !== "granted") {
    throw new Error("Notifications are blocked for this site: allow them in the browser's site settings, then turn this on again.");
  }
  const subscription = await browserSubscription(true);
  const kept = await api("/v1/push/subscriptions", { method: "POST", body: subscription.toJSON() });
  keepPushId(kept.subscription_id);
}

async function turnPushOff() {
  const id = pushIds()[pushSlot()];
  if (id) await api(`/v1/push/subscriptions/${id}`, { method: "DELETE" }).catch((error) => { if (error.status !== 404) throw error; });
  keepPushId(null);
  if (!Object.keys(pushIds()).length) { // no other inbox of this browser wants pushes
    const subscription = await browserSubscription(false);
    if (subscription) await subscription.unsubscribe();
  }
}

// Each time the inbox opens: the browser may have renewed its subscription (new endpoint or
// keys), which only the page can send (the service worker holds no token). Subscribing again is
// idempotent on the server.
async function syncPush() {
  if ("serviceWorker" in navigator) await navigator.serviceWorker.register("/sw.js", { scope: "/" }); // installable
  if (!state.session || !pushSupported() || !pushIds()[pushSlot()]) return;
  if (Notification.permission !== "granted") {
    keepPushId(null);
    return;
  }
  const subscription = await browserSubscription(true);
  const kept = await api("/v1/push/subscriptions", { method: "POST", body: subscription.toJSON() });
  keepPushId(kept.subscription_id);
}

function notificationsPart(me) {
  const line = outcome("push-result");
  const toggle = el("input", { id: "push-toggle", type: "checkbox", role: "switch" });
  const on = "This device is told about new messages the agent does not answer and drafts waiting for you; owners and admins also about channels that need them and the AI allowance running out.";
  if (!pushSupported()) {
    toggle.disabled = true;
    say(line, "This browser cannot receive push notifications here (on an iPhone or iPad: add the inbox to the Home Screen, then open it from there).");
  } else {
    toggle.checked = Boolean(pushIds()[pushSlot()]) && Notification.permission === "granted";
    if (toggle.checked) say(line, on);
  }
  toggle.addEventListener("change", () => act(toggle, line, async () => {
    if (!toggle.checked) {
      await turnPushOff();
      say(line, "This device gets no more notifications from this inbox.");
      return;
    }
    try {
      await turnPushOn();
    } catch (error) {
      toggle.checked = false;
      throw error;
    }
    say(line, on);
  }));
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const quiet = me.quiet_hours || { start: "", end: "" };
  const saved = outcome("preferences-result");
  const hour = (id, name, value) => el("input", { id, name, type: "number", min: "0", max: "23", class: "hour", value: String(value) });
  const form = actionForm({ id: "preferences-form" }, [
    field("Your time zone", { id: "time-zone", name: "time_zone", list: "time-zones", value: me.time_zone || browserZone, required: "", spellcheck: "false" }),
    el("datalist", { id: "time-zones" }, ...zones.map((zone) => el("option", { value: zone }))),
    el("div", { class: "field hours" },
      el("label", { for: "quiet-start" }, "Quiet hours: no notifications from"), hour("quiet-start", "quiet_start", quiet.start),
      el("label", { for: "quiet-end" }, "to"), hour("quiet-end", "quiet_end", quiet.end),
      el("p", { class: "muted" }, "Hours of the day on your clock; leave both empty for none.")),
    el("div", { class: "field hours" },
      el("label", { for: "digest-hour" }, "Morning digest at"), hour("digest-hour", "digest_hour", me.digest_hour ?? ""),
      el("label", { for: "digest-email" }, "o'clock, by e-mail too"),
      el("input", { id: "digest-email", name: "digest_email", type: "checkbox", ...(me.digest_email === false ? {} : { checked: "" }) }),
      el("p", { class: "muted" }, "What waits for you that day, on your clock, when something does; leave the hour empty for none.")),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Save")),
  ], saved, async (fields) => {
    const body = { time_zone: fields.time_zone.value.trim(), digest_email: fields.digest_email.checked };
    const [start, end] = [fields.quiet_start.value, fields.quiet_end.value];
    if (start !== "" || end !== "") body.quiet_hours = { start: Number(start), end: Number(end) };
    if (fields.digest_hour.value !== "") body.digest_hour = Number(fields.digest_hour.value);
    await api("/v1/me/preferences", { method: "PUT", body });
    const digest = body.digest_hour === undefined ? "no morning digest" : `a digest at ${body.digest_hour}:00`;
    say(saved, body.quiet_hours ? `Saved: quiet from ${start}:00 to ${end}:00, ${digest} (${body.time_zone}).` : `Saved: notifications at any hour, ${digest} (${body.time_zone}).`);
  });
  return part("settings-notifications", "Notifications",
    el("p", {}, el("label", { for: "push-toggle", class: "switch" }, toggle, " Notifications on this device")),
    line, form, saved,
    el("p", { class: "muted" }, "Mail about your account (password resets, invitations, changes to how you sign in) is sent by e-mail."));
}

function profilePart(me) {
  const line = outcome("verify-result");
  const verified = me.email_verified
    ? el("p", {}, el("span", { class: "badge ok" }, "E-mail verified"))
    : el("p", {}, el("span", { class: "badge warn" }, "Not verified"), " ",
      el("button", {
        type: "button",
        class: "secondary",
        onclick: (click) => act(click.target, line, async () => {
          const sent = await api("/v1/me/verify-email", { method: "POST" });
          say(line, sent.detail);
        }),
      }, "Resend verification mail"));
  return part("settings-profile", "Profile",
    el("dl", { class: "facts" },
      el("dt", {}, "E-mail"), el("dd", {}, me.email || "—"),
      el("dt", {}, "Display name"), el("dd", {}, me.display_name || "—"),
      el("dt", {}, "Inbox"), el("dd", {}, me.tenant_name || "—"),
      el("dt", {}, "Role"), el("dd", {}, me.role)),
    verified, line);
}

// Deleting the account: the inboxes only you are in are erased (messages, channels, files),
// the others are left; the password (and a 2FA code when on) confirm it.
// Export: the whole inbox as one zip (GET /v1/export), saved through the browser.
function exportPart() {
  const line = outcome("export-result");
  const button = el("button", { type: "button", id: "export-button" }, "Download my inbox");
  button.addEventListener("click", async () => {
    button.disabled = true;
    line.textContent = "Preparing the archive…";
    try {
      let response = await fetch("/v1/export", { headers: { Authorization: `Bearer ${state.session.access_token}` } });
      if (response.status === 401 && (await refresh())) {
        response = await fetch("/v1/export", { headers: { Authorization: `Bearer ${state.session.access_token}` } });
      }
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new Error(data && data.detail ? data.detail : `HTTP ${response.status}`);
      }
      const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
      const link = el("a", { href: URL.createObjectURL(await response.blob()), download: name ? name[1] : "moltbot-export.zip" });
      document.body.append(link);
      link.click();
      link.remove();
      line.textContent = "Downloaded. `moltbot migrate --from-export FILE` brings it into an inbox, this one or another.";
    } catch (error) {
      line.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  return part("settings-export", "Export",
    el("p", { class: "muted" }, "Everything in this inbox as one zip: conversations, messages, contacts, agents, usage and files, with a README."),
    el("div", { class: "row" }, button), line);
}

function deletePart(me) {
  const line = outcome("delete-result");
  const form = actionForm({ id: "delete-form" }, [
    field("Your password", { id: "delete-password", name: "password", type: "password", autocomplete: "current-password", required: "" }),
    me.two_factor ? field("Authentication code", { id: "delete-otp", name: "otp", autocomplete: "one-time-code", required: "" }) : "",
    el("div", { class: "row" }, el("button", { type: "submit", class: "danger" }, "Delete my account")),
  ], line, async (fields) => {
    if (!confirm("Delete your account? Inboxes only you are in are erased for good: their messages, channels and files.")) return;
    const body = { password: fields.password.value };
    if (fields.otp) body.otp = fields.otp.value;
    await api("/v1/me", { method: "DELETE", body });
    logout();
    status("Your account is deleted. Nothing of the inboxes only you were in is kept.");
  });
  return part("settings-delete", "Delete account",
    el("p", { class: "muted" }, "Inboxes where you are the only person are erased with everything in them; from the others you are removed. This cannot be undone."),
    form, line);
}

function passwordPart() {
  const line = outcome("password-result");
  const form = actionForm({ id: "password-form" }, [
    field("Current password", { id: "password-current", name: "current_password", type: "password", autocomplete: "current-password", required: "" }),
    field("New password", { id: "password-new", name: "new_password", type: "password", minlength: "10", autocomplete: "new-password", required: "" }),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Change password")),
  ], line, async (fields) => {
    const changed = await api("/v1/me/password", {
      method: "POST",
      body: { current_password: fields.current_password.value, new_password: fields.new_password.value },
    });
    form.reset();
    say(line, changed.detail);
    load("sessions", renderSessions);
  });
  return part("settings-password", "Password", el("p", { class: "muted" }, "Changing it signs out every other device."), form, line);
}

// Two-factor sign-in: off → turn on (QR, confirm a code, recovery codes shown once) → on.
async function renderTwoFactor() {
  const factor = await api("/v1/me/2fa");
  const box = $("two-factor");
  if (!box) return;
  const line = outcome("two-factor-result");
  if (!factor.enabled) {
    box.replaceChildren(
      el("p", {}, el("span", { class: "badge" }, "Off"), " With it on, signing in also asks for a code from an authenticator app on your phone."),
      el("p", {}, el("button", { type: "button", onclick: (click) => act(click.target, line, startTwoFactor) }, "Turn on two-factor sign-in")),
      line);
    return;
  }
  const form = actionForm({ id: "two-factor-off" }, [
    field("Your password", { id: "two-factor-password", name: "password", type: "password", autocomplete: "current-password", required: "" }),
    field("Code from the app, or a recovery code", { id: "two-factor-otp", name: "otp", autocomplete: "one-time-code", spellcheck: "false", maxlength: "20", required: "" }),
    el("div", { class: "row" }, el("button", { type: "submit", class: "secondary" }, "Turn off")),
  ], line, async (fields) => {
    await api("/v1/me/2fa/disable", { method: "POST", body: { password: fields.password.value, otp: fields.otp.value.trim() } });
    await renderTwoFactor();
    say($("two-factor-result"), "Two-factor sign-in is off.");
  });
  box.replaceChildren(
    el("p", {}, el("span", { class: "badge ok" }, "On"), ` ${plural(factor.recovery_codes_left, "recovery code")} left.`),
    el("p", { class: "muted" }, "To turn it off, confirm with your password and a code."),
    form, line);
}

async function startTwoFactor() {
  const enrolment = await api("/v1/me/2fa", { method: "POST" });
  const line = outcome("two-factor-result");
  const form = actionForm({ id: "two-factor-confirm" }, [
    field("Code from the app", { id: "two-factor-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "7", required: "" }),
    el("div", { class: "row" },
      el("button", { type: "submit" }, "Confirm"),
      el("button", { type: "button", class: "secondary", onclick: () => load("two-factor", renderTwoFactor) }, "Cancel")),
  ], line, async (fields) => {
    const confirmed = await api("/v1/me/2fa/confirm", { method: "POST", body: { code: fields.code.value.replace(/\s/g, "") } });
    showRecoveryCodes(confirmed);
  });
  const secret = enrolment.secret.replace(/(.{4})/g, "$1 ").trim(); // in fours, to type it
  $("two-factor").replaceChildren(
    el("ol", {},
      el("li", {}, "Scan this QR code with an authenticator app (1Password, Google Authenticator, Aegis…)."),
      el("li", {}, "Cannot scan? Type this key into the app instead: ", el("code", { id: "totp-secret", class: "secret" }, secret)),
      el("li", {}, "Enter the 6-digit code the app shows, and confirm.")),
    el("div", { class: "qr" }, svgImage(enrolment.qr_svg, "QR code to scan with your authenticator app")),
    form, line);
  $("two-factor-code").focus();
}

// An SVG our server drew (a QR code), shown as an image: nothing in an <img> runs.
function svgImage(svg, alt) {
  let binary = "";
  for (const byte of new TextEncoder().encode(svg)) binary += String.fromCharCode(byte);
  return el("img", { src: `data:image/svg+xml;base64,${btoa(binary)}`, alt });
}

function showRecoveryCodes(confirmed) {
  const line = outcome("two-factor-result");
  const copy = el("button", {
    type: "button",
    class: "secondary",
    onclick: (click) => act(click.target, line, async () => {
      await navigator.clipboard.writeText(confirmed.recovery_codes.join("\n"));
      say(line, "Copied.");
    }),
  }, "Copy the codes");
  $("two-factor").replaceChildren(
    el("p", { class: "done" }, confirmed.detail),
    el("ol", { id: "recovery-codes", class: "codes" }, ...confirmed.recovery_codes.map((code) => el("li", {}, el("code", {}, code)))),
    el("div", { class: "row" }, copy, el("button", { type: "button", onclick: () => load("two-factor", renderTwoFactor) }, "I have saved them")),
    line);
}

async function renderSessions() {
  const { sessions } = await api("/v1/me/sessions");
  const box = $("sessions");
  if (!box) return;
  const line = outcome("sessions-result");
  const rows = sessions.map((s) => el("tr", {},
    el("td", {}, s.device, s.current ? el("span", { class: "badge ok this" }, "This device") : ""),
    el("td", { title: `Signed in from ${s.ip}` }, s.last_ip || s.ip),
    el("td", {}, when(s.last_used_at)),
    el("td", {}, el("button", { type: "button", class: "quiet", onclick: (click) => act(click.target, line, () => endSession(s)) }, "Sign out"))));
  box.replaceChildren(
    el("table", { id: "session-list" },
      el("thead", {}, el("tr", {}, th("Device"), th("Address"), th("Last used"), th(el("span", { class: "sr-only" }, "Action")))),
      el("tbody", {}, ...rows)),
    line);
}

async function endSession(s) {
  await api(`/v1/me/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
  if (s.current) {
    logout(); // ended on the server already
    $("auth-info").textContent = "This device is signed out.";
    return;
  }
  await renderSessions();
  say($("sessions-result"), `${s.device} is signed out.`);
}

// The inbox's people: members (roles, removal, leaving) and, for owners and admins, invitations.
async function renderPeople() {
  const { members, invitations } = await api("/v1/members");
  const box = $("people");
  const me = state.me;
  if (!box || !me) return;
  const manager = MANAGERS.includes(me.role);
  state.people = new Map(members.map((m) => [m.user_id, m.email || m.display_name || m.user_id]));
  const line = outcome("people-result");
  const parts = [
    el("table", { id: "members" },
      el("thead", {}, el("tr", {}, th("Name"), th("E-mail"), th("Role"), th("Added"), th(el("span", { class: "sr-only" }, "Action")))),
      el("tbody", {}, ...members.map((m) => memberRow(m, me, line)))),
  ];
  if (manager) {
    parts.push(el("h4", {}, "Open invitations"));
    parts.push(invitations.length
      ? el("table", { id: "invitations" },
        el("thead", {}, el("tr", {}, th("E-mail"), th("Role"), th("Valid until"), th(el("span", { class: "sr-only" }, "Action")))),
        el("tbody", {}, ...invitations.map((invitation) => invitationRow(invitation, line))))
      : el("p", { id: "invitations", class: "muted" }, "No open invitations."));
    parts.push(inviteForm(me, line));
  }
  parts.push(line);
  box.replaceChildren(...parts);
}

function memberRow(m, me, line) {
  const self = m.user_id === me.user_id;
  const who = m.email || m.display_name || "this person";
  // Owners manage everyone; admins manage members and admins, never owners (domain/members.py).
  const manageable = MANAGERS.includes(me.role) && (me.role === "owner" || m.role !== "owner");
  const role = manageable
    ? el("select", { "aria-label": `Role of ${who}`, onchange: (change) => changeRole(m, change.target, line) },
      ...ROLES.map((r) => el("option", {
        value: r,
        ...(r === m.role ? { selected: "" } : {}),
        ...(r === "owner" && me.role !== "owner" ? { disabled: "" } : {}),
      }, r)))
    : m.role;
  const label = self ? "Leave" : manageable ? "Remove" : "";
  const remove = label
    ? el("button", { type: "button", class: "quiet", onclick: (click) => act(click.target, line, () => removeMember(m, self)) }, label)
    : "";
  return el("tr", { "data-user": m.user_id },
    el("td", {}, m.display_name || "", self ? el("span", { class: "badge this" }, "You") : ""),
    el("td", {}, m.email || ""), el("td", {}, role), el("td", {}, when(m.added_at)), el("td", {}, remove));
}

async function changeRole(m, select, line) {
  const who = m.email || m.display_name || "This person";
  select.disabled = true;
  say(line, "");
  try {
    await api(`/v1/members/${encodeURIComponent(m.user_id)}`, { method: "PATCH", body: { role: select.value } });
    m.role = select.value;
    if (m.user_id === state.me.user_id) {
      await showSettings(); // what you may do here changed
      status(`You are now ${m.role} of this inbox.`);
      return;
    }
    say(line, `${who} is now ${m.role}.`);
  } catch (error) {
    select.value = m.role;
    say(line, error.message, true);
  } finally {
    select.disabled = false;
  }
}

async function removeMember(m, self) {
  const who = m.email || m.display_name || "this person";
  const inbox = (state.me && state.me.tenant_name) || "this inbox";
  const question = self ? `Leave ${inbox}? You lose access to it at once.` : `Remove ${who} from ${inbox}? They lose access at once.`;
  if (!confirm(question)) return;
  await api(`/v1/members/${encodeURIComponent(m.user_id)}`, { method: "DELETE" });
  if (self) {
    await signOut();
    $("auth-info").textContent = `You left ${inbox}. Sign in again to open your other inboxes.`;
    return;
  }
  await renderPeople();
  say($("people-result"), `${who} is removed from ${inbox}.`);
}

function invitationRow(invitation, line) {
  const withdraw = el("button", {
    type: "button",
    class: "quiet",
    onclick: (click) => act(click.target, line, async () => {
      await api(`/v1/members/invitations/${encodeURIComponent(invitation.id)}`, { method: "DELETE" });
      await renderPeople();
      say($("people-result"), `The invitation to ${invitation.email} is withdrawn.`);
    }),
  }, "Withdraw");
  return el("tr", {}, el("td", {}, invitation.email), el("td", {}, invitation.role), el("td", {}, when(invitation.expires_at)), el("td", {}, withdraw));
}

function inviteForm(me, line) {
  const roles = (me.role === "owner" ? ROLES : ["admin", "member"]).map((r) => [r, r]);
  const form = actionForm({ id: "invite-form", "aria-labelledby": "invite-title" }, [
    field("E-mail of the person to invite", { id: "invite-email", name: "email", type: "email", autocomplete: "off", required: "" }),
    choice("Role", { id: "invite-role", name: "role" }, roles, "member"),
    el("p", { class: "muted" }, "Owners may do everything; admins manage people and channels, never owners; members use the inbox."),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Invite")),
  ], line, async (fields) => {
    const invitation = await api("/v1/members/invitations", { method: "POST", body: { email: fields.email.value.trim(), role: fields.role.value } });
    await renderPeople();
    say($("people-result"), `Invitation sent to ${invitation.email}: its link works until ${when(invitation.expires_at)}.`);
  });
  return el("div", {}, el("h4", { id: "invite-title" }, "Invite someone"), form);
}

function inboxesPart(me) {
  const inboxes = me.inboxes || [];
  if (inboxes.length <= 1) {
    return part("settings-inboxes", "Inboxes", el("p", {}, `You belong to one inbox: ${me.tenant_name || "this one"}.`));
  }
  const line = outcome("inboxes-result");
  const options = inboxes.map((i) => [i.tenant_id, `${i.name} (${i.role})${i.tenant_id === me.tenant_id ? " · open now" : ""}`]);
  const form = actionForm({ id: "switch-form" }, [
    choice("Inbox", { id: "inbox-choice", name: "tenant_id" }, options, me.tenant_id),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Switch")),
  ], line, async (fields) => {
    const target = inboxes.find((i) => i.tenant_id === fields.tenant_id.value);
    if (target.tenant_id === me.tenant_id) {
      say(line, `${target.name} is open already.`);
      return;
    }
    await switchInbox(target);
  });
  return part("settings-inboxes", "Inboxes", el("p", { class: "muted" }, `You belong to ${inboxes.length} inboxes.`), form, line);
}

async function switchInbox(target) {
  const data = await api("/v1/auth/switch", { method: "POST", body: { tenant_id: target.tenant_id } });
  if (state.events) state.events.close();
  leaveInbox();
  signedIn(data);
  await start(data.seq);
  status(`Switched to ${target.name}.`);
}

// The audit log, newest first; "Older" appends the next page.
async function renderAudit(cursor) {
  const page = await api("/v1/audit", { params: { cursor, limit: 50 } });
  const box = $("audit");
  if (!box) return;
  let rows = $("audit-rows");
  if (!cursor || !rows) {
    rows = el("tbody", { id: "audit-rows" });
    box.replaceChildren(
      el("table", { class: "compact" }, el("thead", {}, el("tr", {}, th("When"), th("What"), th("Who"), th("About"), th("From"))), rows),
      el("p", {}, el("button", { id: "audit-older", type: "button", class: "secondary" }, "Older")),
      outcome("audit-result"));
  }
  rows.append(...page.entries.map(auditRow));
  if (!rows.children.length) rows.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "Nothing recorded yet.")));
  const older = $("audit-older");
  older.hidden = !page.next_cursor;
  older.onclick = () => act(older, $("audit-result"), () => renderAudit(page.next_cursor));
}

function auditRow(entry) {
  // People by address where the inbox knows them (user ids otherwise).
  const person = (ref) => {
    const id = String(ref ?? "").replace(/^user:/, "");
    return (state.people && state.people.get(id)) || String(ref ?? "");
  };
  const details = Object.entries(entry.detail || {})
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : person(value)}`).join(", ");
  return el("tr", {},
    el("td", {}, when(entry.at)),
    el("td", {}, entry.action, entry.count > 1 ? ` ×${entry.count}` : "", details ? el("small", { class: "muted" }, ` (${details})`) : ""),
    el("td", {}, person(entry.actor)),
    el("td", {}, person(entry.target)),
    el("td", { title: entry.user_agent || "" }, entry.ip || ""));
}

// --- links from account mail (#reset=, #verify=, #invite=) and forgotten passwords ------------

function showAccountCard(title, ...children) {
  show("account");
  $("account-title").textContent = title;
  $("account-body").replaceChildren(...children);
}

// Leave the card: to the inbox when signed in, else to the sign-in card.
function backButton(label) {
  return el("button", { type: "button", class: "quiet", onclick: () => (state.session ? start() : showSignIn()) }, label);
}

function showForgotPassword(email) {
  const line = outcome("forgot-result");
  const form = actionForm({ id: "forgot-form" }, [
    el("p", { class: "muted" }, "We mail you a link to choose a new password. It works once, for 30 minutes."),
    field("E-mail", { id: "forgot-email", name: "email", type: "email", autocomplete: "email", required: "", value: email || "" }),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Send reset link"), backButton("Back to sign in")),
  ], line, async (fields) => {
    const sent = await api("/v1/auth/password-reset", { method: "POST", body: { email: fields.email.value }, anonymous: true });
    say(line, sent.detail);
  });
  showAccountCard("Reset your password", form, line);
  $("forgot-email").focus();
}

function showReset(token) {
  const line = outcome("reset-result");
  const form = actionForm({ id: "reset-form" }, [
    el("p", { class: "muted" }, "At least 10 characters. Setting it signs out every device signed in to your account."),
    field("New password", { id: "reset-password", name: "password", type: "password", minlength: "10", autocomplete: "new-password", required: "" }),
    field("Repeat it", { id: "reset-again", name: "again", type: "password", minlength: "10", autocomplete: "new-password", required: "" }),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Set new password"), backButton("Cancel")),
  ], line, async (fields) => {
    if (fields.password.value !== fields.again.value) throw new Error("The two passwords differ: type the same one twice.");
    const done = await api("/v1/auth/password-reset/confirm", { method: "POST", body: { token, password: fields.password.value }, anonymous: true });
    if (state.session) logout(); // the reset ended every session, this one too
    showSignIn(done.detail);
  });
  showAccountCard("Choose a new password", form, line);
  $("reset-password").focus();
}

async function verifyEmail(token) {
  try {
    const verified = await api("/v1/auth/verify-email", { method: "POST", body: { token }, anonymous: true });
    const message = `Your address ${verified.email} is verified.`;
    status(message);
    if (!state.session) $("auth-info").textContent = `${message} Sign in to continue.`;
    if (!$("settings").hidden) showSettings();
  } catch (error) {
    status(error.message);
    if (!state.session) $("auth-error").textContent = error.message;
  }
}

async function showInvitation(token) {
  let invitation;
  try {
    invitation = await api("/v1/auth/invitations/preview", { method: "POST", body: { token }, anonymous: true });
  } catch (error) {
    showAccountCard("This invitation cannot be used",
      el("p", { class: "error", role: "alert" }, error.message),
      el("div", { class: "row" }, backButton(state.session ? "Open my inbox" : "Back to sign in")));
    return;
  }
  const line = outcome("invite-result");
  const fields = invitation.account_exists
    ? [
      el("p", {}, `${invitation.email} has an account: sign in with its password to join.`),
      field("Password", { id: "invite-password", name: "password", type: "password", autocomplete: "current-password", required: "" }),
      field("Authentication code (only with two-factor sign-in)", { id: "invite-otp", name: "otp", autocomplete: "one-time-code", spellcheck: "false", maxlength: "20" }),
      el("div", { class: "row" }, el("button", { type: "submit" }, "Sign in and join"), backButton("Not now")),
    ]
    : [
      el("p", {}, `Create your account for ${invitation.email}.`),
      field("Your name", { id: "invite-name", name: "display_name", autocomplete: "name", maxlength: "100" }),
      field("Choose a password", { id: "invite-password", name: "password", type: "password", minlength: "10", autocomplete: "new-password", required: "" }),
      el("div", { class: "row" }, el("button", { type: "submit" }, "Create account and join"), backButton("Not now")),
    ];
  const form = actionForm({ id: "invite-accept" }, fields, line, async (inputs) => {
    const body = { token, password: inputs.password.value };
    if (inputs.display_name && inputs.display_name.value.trim()) body.display_name = inputs.display_name.value.trim();
    if (inputs.otp && inputs.otp.value.trim()) body.otp = inputs.otp.value.trim();
    let data;
    try {
      data = await api("/v1/auth/invitations/accept", { method: "POST", body, anonymous: true });
    } catch (error) {
      if (error.code === "otp_required" || error.code === "invalid_otp") $("invite-otp").focus();
      throw error;
    }
    if (state.session) endServerSession(); // one session per browser: the new one replaces it
    if (state.events) state.events.close();
    leaveInbox();
    signedIn(data);
    await start(data.seq);
    status(`Welcome to ${invitation.inbox}.`);
  });
  const inviter = invitation.invited_by || "Someone";
  showAccountCard(`Join ${invitation.inbox}`,
    el("p", { class: "invited" }, `${inviter} invited you to `, el("strong", {}, invitation.inbox), ` as ${invitation.role}.`),
    el("p", { class: "muted" }, `The invitation is valid until ${when(invitation.expires_at)}.`),
    form, line);
}

// A link from account mail: its token is in the fragment (never sent to a server), taken out
// of the address bar at once so it stays in no history or bookmark.
function takeLink() {
  const match = location.hash.match(/^#(reset|verify|invite)=([A-Za-z0-9_-]+)$/);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return { kind: match[1], token: match[2] };
}

function openLink(link) {
  if (link.kind === "reset") showReset(link.token);
  else if (link.kind === "invite") showInvitation(link.token);
  else verifyEmail(link.token);
}

// Where a notification points (its url's fragment): a conversation, or a page of the inbox.
async function openTarget(hash) {
  const conversation = hash.match(/^#conversation=([A-Za-z0-9_-]+)$/);
  const view = hash.match(/^#(channels|usage|settings)$/);
  const today = hash === "#digest";
  if (!state.session || !(conversation || view || today)) return;
  history.replaceState(null, "", location.pathname + location.search);
  if (today) {
    show("inbox");
    chooseView("digest");
    return;
  }
  if (view) {
    show(view[1]);
    return;
  }
  show("inbox");
  try {
    await openConversation(await api(`/v1/conversations/${conversation[1]}`));
  } catch (error) {
    status(error.message);
  }
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (message) => {
    if (message.data && message.data.type === "open") openTarget(new URL(message.data.url, location.origin).hash);
  });
}

window.addEventListener("hashchange", () => {
  const link = takeLink();
  if (!link) {
    openTarget(location.hash);
    return;
  }
  if (link.kind === "verify" && !state.session) showSignIn();
  openLink(link);
});

// --- start ---------------------------------------------------------------------------------------

// The owner learns when the agent stops answering for the plan's AI allowance.
async function checkAllowance() {
  const billing = await api("/v1/billing");
  const until = billing.ai.paused_until;
  const notice = $("notice");
  notice.hidden = !until;
  if (!until) return;
  const month = billing.ai.allowance_micros !== null && billing.ai.spent_this_month_micros >= billing.ai.allowance_micros;
  notice.textContent = `${month ? "This month's" : "Today's"} AI allowance is used up: your agent answers with a short note until ${new Date(until).toLocaleString()}.${billing.upgrade ? " Upgrade on the Usage page for more." : ""}`;
}

// While the inbox is away: a line that says until when, and "I'm back".
function showAway(away, me) {
  const line = $("away-notice");
  line.hidden = !away.on;
  if (!away.on) return;
  const back = MANAGERS.includes(me.role)
    ? el("button", { type: "button", class: "link", onclick: async () => {
      const accepted = await api("/v1/away", { method: "DELETE" });
      status("Welcome back.");
      await loadConversations({ minSeq: accepted.seq });
    } }, "I'm back")
    : "";
  line.replaceChildren(`Away until ${when(away.away.until)}: people who write get your away message, notifications wait. `, back);
}

// The channel filter offers the kinds this inbox has connected.
async function fillChannelFilter() {
  const kinds = [...new Set((await api("/v1/channels")).map((c) => c.channel))].sort();
  const select = $("channel-filter");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"), ...kinds.map((kind) => el("option", { value: kind }, kind)));
  select.value = kinds.includes(chosen) ? chosen : "";
}

async function start(minSeq) {
  show("inbox");
  try {
    await loadConversations({ minSeq });
    checkAllowance().catch(() => {});
    fillChannelFilter().catch(() => {});
    syncPush().catch(() => {});
    follow();
    status("Live");
    await openTarget(location.hash); // opened from a notification
  } catch (error) {
    status(error.message);
  }
}

// A link from mail first: a reset or an invitation takes the screen; a verification is said
// over the inbox (or the sign-in card).
const link = takeLink();
if (link && link.kind !== "verify") openLink(link);
else {
  if (state.session) start();
  else show("auth");
  if (link) openLink(link);
}
