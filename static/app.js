/*
 * Herald message center (browser page).
 *
 * One live connection per browser, not per tab: a browser opens at most six
 * HTTP/1.1 connections per origin and every SSE stream or long-poll holds one
 * for good, so a handful of tabs would starve each other (and their own REST
 * calls). When BroadcastChannel exists, the tabs of one user therefore elect
 * a leader, with navigator.locks when available (the browser releases the
 * lock by itself when the tab closes or crashes) or else with a heartbeat on
 * the channel. Only the leader holds the live connection; it relays every
 * event and its connection state on the channel `herald:<sub>`. Every tab,
 * the leader included, applies events through the same path that orders and
 * deduplicates them by seq, so when the leader goes away the next tab simply
 * resumes the stream from its own last applied seq. Without BroadcastChannel
 * each tab connects on its own.
 *
 * The UI never changes because a REST call succeeded: changes are applied
 * when their event arrives from the per-user log, so all tabs converge on the
 * same state. A failed REST call shows an error.
 *
 * Every visible text comes from the message table of the reader's language
 * (i18n.js); switching language re-renders the texts in place.
 *
 * The badges are fed only by the `counts` every event carries (and the list
 * answer's totals after a load): counts derived from a partial list could
 * never be exact, the server's are.
 *
 * The settings panel has a switch per category (those of the loaded
 * notifications and those the user has set). Like everything else it shows
 * the preferences of the last `preferences` event (each carries the whole
 * document), so a change made in another tab or on another device appears
 * live; flipping a switch sends the change, and puts it back if that fails.
 */
import {
  LANGUAGES, language, setLanguage, t, tNodes, count, relativeTime, fullTime, clockTime,
} from '/i18n.js';

const TOKEN_KEY = 'herald.token';
// Every type of the log: EventSource drops events of a type nobody listens to.
const EVENT_TYPES = [
  'notification', 'updated', 'read', 'unread', 'seen', 'archived', 'unarchived',
  'snoozed', 'unsnoozed', 'action', 'deleted', 'expired',
  'read_all', 'seen_all', 'archived_all', 'deleted_all', 'preferences', 'reset',
];
/** What a view lists: `status` of the list request, and which notifications belong in it. */
const VIEWS = {
  inbox: { status: 'all', holds: n => !n.archived_at && !n.snoozed_until },
  // Archived and snoozed counts as archived.
  archived: { status: 'archived', holds: n => !!n.archived_at },
};
const PAGE_SIZE = 50;
const MAX_TIMEOUT = 2 ** 31 - 1; // setTimeout overflows above this

const byId = id => document.getElementById(id);
const ui = {
  unread: byId('unread-count'), unreadSummary: byId('unread-summary'),
  bell: byId('bell'), unseen: byId('unseen-count'),
  connection: byId('connection'), account: byId('account'),
  signedInAs: byId('signed-in-as'), signout: byId('signout'), error: byId('error'),
  language: byId('language'),
  signin: byId('signin'), signinMessage: byId('signin-message'), tokenInput: byId('token-input'),
  center: byId('center'), filter: byId('category-filter'), markAll: byId('mark-all-read'),
  views: byId('views'), tabs: [...document.querySelectorAll('#views [role="tab"]')], view: byId('view'),
  list: byId('notifications'), empty: byId('empty'), loadOlder: byId('load-older'),
  switchDialog: byId('switch-dialog'), switchText: byId('switch-text'),
  switchWarning: byId('switch-warning'), switchKeep: byId('switch-keep'),
  switchAccept: byId('switch-accept'),
  settings: byId('settings'), preferences: byId('preferences'), preferencesEmpty: byId('preferences-empty'),
  announce: byId('announce'),
};

/** The signed-in session, or null. Async work checks `s.closed` before touching the page. */
let S = null;
/** What the page shows while signed out, and the connection state, kept to re-render them in another language. */
let signinMessage = null;
let connectionShown = { connection: 'closed', transport: null, relayed: false };
/** A sign-in link waiting for the reader's answer: { token, sub, current } (current: the signed-in sub). */
let offered = null;
/** Whether the list is open (the bell toggles it); open and on screen, what it shows counts as seen. */
let panelOpen = true;

// ---------------------------------------------------------------- helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text; // never innerHTML: content is untrusted
  return node;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** Exponential backoff with jitter, so many clients do not retry in lockstep. */
const backoff = attempt => Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);

/** A user id as an isolated element: an id with bidirectional characters cannot reorder the text around it. */
function userName(sub) {
  return el('bdi', 'user-name', sub);
}

let errorTimer;
function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { ui.error.hidden = true; }, 10000);
}

// ------------------------------------------------------------------ token

/** Reads `#token=` and removes it from the address bar (and so from history). */
function tokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('token')) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return params.get('token').trim() || null;
}

/** The JWT payload, for display only: the server does the real checking. */
function decodeClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')), c => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** The claims of a token the page can use (a JWT with a `sub`), or null. */
function usableClaims(token) {
  const claims = decodeClaims(token);
  return claims && typeof claims.sub === 'string' && claims.sub ? claims : null;
}

/** Past `exp` by this browser's clock: such a session is over, replacing it needs no question. */
const expired = exp => Number.isFinite(Number(exp)) && exp * 1000 <= Date.now();

/*
 * The token is kept twice. sessionStorage holds this tab's, so a reload keeps
 * the tab's user even while other tabs are signed in as someone else.
 * localStorage holds the one signed in last in this browser, so a new tab
 * opens signed in, and a sign-in link opened in a new tab meets the session
 * it would replace (see offerToken).
 */
function stored(area) {
  try { return window[area].getItem(TOKEN_KEY); } catch { return null; }
}

function store(area, token) {
  try {
    if (token == null) window[area].removeItem(TOKEN_KEY);
    else window[area].setItem(TOKEN_KEY, token);
  } catch { /* storage unavailable: the session lasts as long as the page */ }
}

/**
 * A token from a `#token=` link. Anyone can craft such a link, so it never
 * silently swaps the reader into another user's center: the reader is asked,
 * and the current session goes on until they agree. A token the server
 * refuses replaces nothing, so a crafted link cannot even sign the reader out.
 */
async function offerToken(token) {
  const claims = usableClaims(token);
  if (!claims) {
    if (S) showError(t('invalidLink')); else showSignin('invalidToken');
    return;
  }
  const current = S;
  if (!current || expired(current.exp)) {
    startSession(token, claims);
    return;
  }
  if (token === current.token) return;
  if (!(await accepted(token))) {
    showError(t('invalidLink'));
    return;
  }
  if (S !== current) {
    offerToken(token); // signed in or out meanwhile: decide afresh
    return;
  }
  if (claims.sub === current.sub) {
    startSession(token, claims); // a fresh token for the same user
    return;
  }
  offered = { token, sub: claims.sub, current: current.sub };
  renderSwitch();
  // A value left from an earlier answer must not count when Escape closes it.
  ui.switchDialog.returnValue = '';
  if (!ui.switchDialog.open) ui.switchDialog.showModal();
}

// ------------------------------------------------------------------- REST

/** `init.json`: a body to send as JSON. Errors carry the answer's `status`. */
async function api(s, url, { json, ...init } = {}) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${s.token}` };
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(url, { ...init, cache: 'no-store', headers });
  } catch {
    throw new Error(t('unreachable'));
  }
  if (res.status === 401) {
    signOut(s, 'expired');
    throw Object.assign(new Error('signed out'), { signedOut: true });
  }
  if (!res.ok) throw Object.assign(new Error(await problemText(res)), { status: res.status });
  return res.status === 204 ? null : res.json();
}

async function problemText(res) {
  try {
    const p = await res.json();
    return [p.title, p.detail].filter(Boolean).join(': ') || `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

/** Whether the server takes a token; an unreachable server is no refusal (the session finds out later). */
async function accepted(token) {
  try {
    const res = await fetch('/v1/me/notifications?status=unread&limit=1', {
      cache: 'no-store',
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
    });
    return res.status !== 401;
  } catch {
    return true;
  }
}

/** Asks the server whether the token still works; signs out if it does not. */
async function checkToken(s) {
  try {
    await api(s, '/v1/me/notifications?status=unread&limit=1');
  } catch { /* unreachable or failing server: not a token problem */ }
  return !s.closed;
}

function listUrl(s, before) {
  const q = new URLSearchParams({ status: VIEWS[s.view].status, limit: String(PAGE_SIZE) });
  if (before != null) q.set('before', String(before));
  if (s.category) q.set('category', s.category);
  return `/v1/me/notifications?${q}`;
}

// ---------------------------------------------------------------- session

function startSession(token, claims = usableClaims(token)) {
  if (!claims) {
    showSignin('invalidToken');
    return;
  }
  if (S) signOut(S);
  store('sessionStorage', token);
  store('localStorage', token);
  let markLoaded;
  const s = {
    token,
    sub: claims.sub,
    exp: Number(claims.exp),
    items: new Map(),      // id -> { n, li }: what the current view shows
    touched: new Map(),    // id -> seq of the last applied event about it (tells stale REST copies)
    lastBulk: 0,           // seq of the last applied bulk event (read_all, archived_all, …)
    categories: new Set(),
    category: '',          // active filter, '' = all
    prefs: new Map(),      // category -> enabled, as the user has set them (others are on)
    prefsEvents: 0,        // `preferences` events applied (tells a stale GET answer)
    view: 'inbox',         // a key of VIEWS
    lastSeq: 0,            // last applied seq = the resume point
    unread: 0,             // the user's counts, from the last event or list answer
    unseen: 0,
    seenUpTo: -1,          // up_to_seq of the last seen-all sent for this view
    nextBefore: null,
    ready: false,          // false while the list (re)loads; events wait in `pending`
    pending: [],
    loadGen: 0,
    loaded: new Promise(resolve => { markLoaded = resolve; }),
    markLoaded,
    leading: false,
    live: null,            // the leader's transport
    state: null,           // the leader's last connection state message
    channel: null,
    onElection: null,
    cleanups: [],
    closed: false,
  };
  S = s;
  showCenter(s);
  showConnection('connecting', null);
  coordinate(s);
  reload(s);
  if (Number.isFinite(s.exp)) watchExpiry(s, s.exp * 1000 - Date.now() + 1000);
  s.cleanups.push(() => { clearTimeout(s.expiryTimer); clearTimeout(s.seenTimer); });
}

/** `message`: the key of the text the sign-in form shows. */
function signOut(s, message = 'signedOut') {
  if (s.closed) return;
  s.closed = true;
  for (const undo of s.cleanups.reverse()) undo();
  if (S !== s) return;
  S = null;
  store('sessionStorage', null);
  // Another tab may have signed in someone else since: leave theirs.
  if (stored('localStorage') === s.token) store('localStorage', null);
  showSignin(message);
}

/** Followers hold no connection, so they notice expiry here (the server has the last word). */
function watchExpiry(s, delay) {
  clearTimeout(s.expiryTimer);
  s.expiryTimer = setTimeout(async () => {
    if (Date.now() < s.exp * 1000) return watchExpiry(s, s.exp * 1000 - Date.now() + 1000);
    if (await checkToken(s)) watchExpiry(s, 30000); // server clock or leeway differs: ask again later
  }, Math.max(0, Math.min(delay, MAX_TIMEOUT)));
}

// ------------------------------------------------------ tab coordination

function coordinate(s) {
  if (!('BroadcastChannel' in window)) {
    becomeLeader(s);
    s.cleanups.push(() => resign(s));
    return;
  }
  const channel = new BroadcastChannel(`herald:${s.sub}`);
  s.channel = channel;
  s.cleanups.push(() => channel.close());
  channel.onmessage = ({ data: m }) => {
    if (s.closed || !m) return;
    if (m.t === 'event') { if (!s.leading) receive(s, m.ev); }
    else if (m.t === 'state') { if (!s.leading) showConnection(m.connection, m.transport, true); }
    else if (m.t === 'hello') { if (s.leading && s.state) relay(s, s.state); }
    else s.onElection?.(m);
  };
  // Subscribe first, load second: relayed events that race the REST load wait in `pending`.
  channel.postMessage({ t: 'hello' });
  if (navigator.locks?.request) electWithLock(s); else electWithHeartbeat(s);
  s.cleanups.push(() => resign(s)); // runs first (cleanups run in reverse)
}

function electWithLock(s) {
  const abort = new AbortController();
  let release = () => {};
  // Per user, so tabs signed in as different users do not wait on each other.
  navigator.locks.request(`herald-leader:${s.sub}`, { signal: abort.signal }, () => {
    if (s.closed) return undefined;
    return new Promise(resolve => { release = resolve; becomeLeader(s); });
  }).catch(() => { /* aborted: signed out while waiting */ });
  s.cleanups.push(() => { abort.abort(); release(); });
}

/** Fallback without Web Locks: the leader beats every 500 ms; silence for 3 s means it is gone. */
function electWithHeartbeat(s) {
  const me = Math.random().toString(36).slice(2);
  let leader = null;
  let deadline = Date.now() + 1500; // give a current leader time to make itself heard
  let led = false; // announced ourselves as leader, so owe the others a 'bye'
  const post = t => relay(s, { t, id: me });
  s.onElection = m => {
    if (m.t === 'beat') {
      if (s.leading && m.id < me) { resign(s); led = false; } // two leaders: the smaller id wins
      if (!s.leading) { leader = m.id; deadline = Date.now() + 3000; }
    } else if (m.t === 'bye' && m.id === leader && !s.leading) {
      deadline = Date.now() + Math.random() * 300; // take over soon; jitter avoids a crowd
    }
  };
  const timer = setInterval(() => {
    if (!s.leading && Date.now() > deadline) becomeLeader(s);
    if (s.leading) { led = true; post('beat'); }
  }, 500);
  const bye = () => { resign(s); if (led) { led = false; post('bye'); } };
  addEventListener('pagehide', bye);
  s.cleanups.push(() => { bye(); clearInterval(timer); removeEventListener('pagehide', bye); });
}

function becomeLeader(s) {
  if (s.closed || s.leading) return;
  s.leading = true;
  leaderState(s, 'connecting', null);
  // Connect only after the list loaded: its last_seq is where the stream resumes.
  s.loaded.then(() => { if (s.leading && !s.live && !s.closed) s.live = openLive(s); });
}

function resign(s) {
  if (!s.leading) return;
  s.live?.close();
  s.live = null;
  relay(s, { t: 'state', connection: 'reconnecting', transport: s.state?.transport ?? null });
  s.leading = false;
}

/** Posts to the other tabs; a late callback after sign-out finds the channel closed. */
function relay(s, message) {
  try { s.channel?.postMessage(message); } catch { /* closed */ }
}

/** The leader shows its connection state and tells the followers. */
function leaderState(s, connection, transport) {
  if (s.closed || !s.leading) return;
  s.state = { t: 'state', connection, transport };
  relay(s, s.state);
  showConnection(connection, transport);
}

// ------------------------------------------------------------- transports

const TRANSPORTS = { sse: openSse, ws: openWs, poll: openPoll };

function transportOrder() {
  const forced = new URLSearchParams(location.search).get('transport');
  if (forced && Object.hasOwn(TRANSPORTS, forced)) return [forced];
  return [window.EventSource && 'sse', window.WebSocket && 'ws', 'poll'].filter(Boolean);
}

/**
 * Opens the first transport of the order; one that never reaches OPEN after a
 * few tries hands over to the next (`fallback`). Transports report
 * 'connecting' (never open yet), 'live' (open) and 'reconnecting' (lost,
 * retrying), like EventSource's readyState.
 */
function openLive(s) {
  const order = transportOrder();
  let index = 0;
  let current;
  const h = {
    token: s.token,
    from: () => s.lastSeq,
    state: connection => leaderState(s, connection, order[index]),
    event(ev) {
      relay(s, { t: 'event', ev });
      receive(s, ev);
    },
    stillSignedIn: () => checkToken(s),
    fallback() {
      if (index + 1 >= order.length) return false;
      current.close();
      current = TRANSPORTS[order[++index]](h);
      return true;
    },
  };
  current = TRANSPORTS[order[0]](h);
  return { close: () => current.close() };
}

/** Where a stream continues after this event: a reset moves the cursor to its last_seq. */
function cursorAfter(ev, cursor) {
  const next = Number(ev.type === 'reset' ? ev.data?.last_seq : ev.seq);
  return Number.isSafeInteger(next) ? next : cursor;
}

function openSse(h) {
  let es;
  let opened = false; // reached OPEN at least once: later errors are reconnects, not a reason to fall back
  let tries = 0;
  let closed = false;
  let timer;

  const connect = () => {
    es = new EventSource(`/v1/me/stream?access_token=${encodeURIComponent(h.token)}&last_event_id=${h.from()}`);
    h.state(opened ? 'reconnecting' : 'connecting');
    // A buffering proxy can keep the stream from ever opening: count that as a failed try.
    timer = setTimeout(() => { es.close(); retry(); }, 10000);
    es.onopen = () => {
      clearTimeout(timer);
      opened = true;
      tries = 0;
      h.state('live');
    };
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, e => {
        let data;
        try { data = JSON.parse(e.data); } catch { return; }
        h.event({ seq: Number(e.lastEventId), type, data });
      });
    }
    es.onerror = () => {
      if (closed) return;
      if (es.readyState === EventSource.CONNECTING) {
        // The browser retries by itself and sends Last-Event-ID.
        h.state(opened ? 'reconnecting' : 'connecting');
        if (!opened && ++tries >= 3) h.fallback();
        return;
      }
      // CLOSED: the server refused the stream (401, 429, 5xx…) and the browser gave up.
      clearTimeout(timer);
      retry();
    };
  };

  const retry = async () => {
    h.state(opened ? 'reconnecting' : 'connecting');
    if (!(await h.stillSignedIn()) || closed) return;
    tries += 1;
    if (!opened && tries >= 3 && h.fallback()) return;
    timer = setTimeout(connect, backoff(tries));
  };

  connect();
  return { close() { closed = true; clearTimeout(timer); es?.close(); } };
}

function openWs(h) {
  let ws;
  let cursor = h.from();
  let opened = false;
  let tries = 0;
  let closed = false;
  let timer;
  let pinger;

  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${scheme}//${location.host}/v1/me/ws?access_token=${encodeURIComponent(h.token)}&last_event_id=${cursor}`);
    h.state(opened ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      opened = true;
      tries = 0;
      h.state('live');
      // Keeps idle proxies from cutting the socket; the server answers {"type":"pong"}.
      pinger = setInterval(() => ws.send('{"op":"ping"}'), 25000);
    };
    ws.onmessage = e => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (!msg || !EVENT_TYPES.includes(msg.type)) return; // pong, ack, error
      cursor = cursorAfter(msg, cursor);
      h.event({ seq: msg.seq, type: msg.type, data: msg.data });
    };
    ws.onclose = async () => {
      clearInterval(pinger);
      if (closed) return;
      h.state(opened ? 'reconnecting' : 'connecting');
      // A refused handshake (401) is invisible to WebSocket: ask REST.
      if (!(await h.stillSignedIn()) || closed) return;
      tries += 1;
      if (!opened && tries >= 3 && h.fallback()) return;
      timer = setTimeout(connect, backoff(tries));
    };
  };

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(pinger);
      ws?.close();
    },
  };
}

function openPoll(h) {
  let cursor = h.from();
  let closed = false;
  let abort;

  (async () => {
    let opened = false;
    let attempt = 0;
    h.state('connecting');
    while (!closed) {
      abort = new AbortController();
      try {
        // The first poll answers at once, so the page knows it is live; later
        // ones wait on the server. The Bearer header keeps the token out of
        // URLs (and access logs).
        const wait = opened ? 25 : 0;
        const res = await fetch(`/v1/me/events?after=${cursor}&wait=${wait}`, {
          headers: { Accept: 'application/json', Authorization: `Bearer ${h.token}` },
          cache: 'no-store',
          signal: abort.signal,
        });
        if (res.status === 401 && !(await h.stillSignedIn())) return;
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const body = await res.json();
        if (closed) return;
        opened = true;
        attempt = 0;
        h.state('live');
        for (const ev of body.events) {
          cursor = cursorAfter(ev, cursor);
          h.event(ev);
        }
        if (!body.events.length && Number.isSafeInteger(body.last_seq)) cursor = body.last_seq;
      } catch {
        if (closed) return;
        h.state(opened ? 'reconnecting' : 'connecting');
        await sleep(backoff(attempt++));
      }
    }
  })();

  return { close() { closed = true; abort?.abort(); } };
}

// ------------------------------------------------------------ the log

/** Entry point for every live event, whether from our own transport or relayed by the leader. */
function receive(s, ev) {
  if (s.closed || !ev) return;
  if (!s.ready) { s.pending.push(ev); return; }
  apply(s, ev);
}

const nowIso = () => new Date().toISOString();

function apply(s, ev) {
  if (ev.type === 'reset') { reload(s); return; }
  const seq = Number(ev.seq);
  if (!Number.isSafeInteger(seq) || seq <= s.lastSeq) return; // already applied (or reflected by REST)
  s.lastSeq = seq;
  const { counts, ...d } = ev.data || {};
  if (typeof d.id === 'string') s.touched.set(d.id, seq);
  switch (ev.type) {
    case 'notification':
      if (d.id && !s.items.has(d.id)) place(s, d, 'newNotification');
      break;
    case 'updated':
      if (d.id) place(s, d, 'updatedNotification');
      break;
    case 'read':
      patch(s, d.id, n => { n.read_at = d.read_at || nowIso(); n.seen_at ??= n.read_at; });
      break;
    case 'unread': patch(s, d.id, n => { n.read_at = null; }); break;
    case 'seen': patch(s, d.id, n => { n.seen_at = d.seen_at || nowIso(); }); break;
    case 'action':
      patch(s, d.id, n => {
        n.action_taken = { id: d.action_id, at: d.at };
        n.read_at = d.read_at || n.read_at || d.at;
        n.seen_at ??= n.read_at;
      });
      break;
    // The four below move a notification between views; one the view does
    // not hold may now belong in it, and only the server has its fields.
    case 'archived':
      if (!patch(s, d.id, n => { n.archived_at = d.archived_at || nowIso(); }) && s.view === 'archived') fetchInto(s, d.id);
      break;
    case 'unarchived':
      if (!patch(s, d.id, n => { n.archived_at = null; }) && s.view === 'inbox') fetchInto(s, d.id);
      break;
    case 'snoozed': patch(s, d.id, n => { n.snoozed_until = d.until; }); break;
    case 'unsnoozed':
      if (!patch(s, d.id, n => { n.snoozed_until = null; }) && s.view === 'inbox') fetchInto(s, d.id);
      break;
    case 'deleted':
    case 'expired':
      dropItem(s, d.id);
      break;
    case 'read_all':
    case 'seen_all':
    case 'archived_all':
    case 'deleted_all':
      s.lastBulk = seq;
      bulk(s, ev.type, d);
      break;
    case 'preferences':
      s.prefsEvents += 1;
      setPreferences(s, d.categories);
      break;
    default: break; // unknown types still advance the cursor
  }
  setCounts(s, counts);
  renderMeta(s);
}

function setCounts(s, counts) {
  if (Number.isSafeInteger(counts?.unread)) s.unread = counts.unread;
  if (Number.isSafeInteger(counts?.unseen)) s.unseen = counts.unseen;
}

/** (Re)loads the first page. Its last_seq becomes the resume point; events newer than it are replayed on top. */
async function reload(s) {
  const gen = ++s.loadGen;
  s.ready = false;
  let page;
  for (let attempt = 0; !page; attempt++) {
    try {
      page = await api(s, listUrl(s));
    } catch (err) {
      if (err.signedOut || s.closed || gen !== s.loadGen) return;
      showError(t('loadFailed', { error: err.message }));
      await sleep(backoff(attempt));
    }
    if (s.closed || gen !== s.loadGen) return;
  }
  ui.list.replaceChildren();
  s.items.clear();
  s.touched.clear();
  s.lastBulk = 0;
  s.seenUpTo = -1;
  s.lastSeq = page.last_seq;
  s.unread = page.unread_count;
  s.unseen = page.unseen_count ?? 0;
  s.nextBefore = page.next_before;
  for (const n of page.items) insertItem(s, n);
  s.ready = true;
  for (const ev of s.pending.splice(0)) {
    // This snapshot already covers any reset that was queued while it loaded.
    if (ev.type === 'reset' && !(ev.data?.last_seq > s.lastSeq)) continue;
    apply(s, ev);
  }
  renderMeta(s);
  s.markLoaded();
  wantSeen(s);
  loadPreferences(s);
}

async function loadOlder(s) {
  if (s.nextBefore == null) return;
  const gen = s.loadGen;
  ui.loadOlder.disabled = true;
  try {
    let page;
    // A bulk event applied after the page's snapshot changed notifications
    // the page may hold, unknown which: ask again (a few times at most).
    for (let attempt = 0; attempt < 3; attempt++) {
      page = await api(s, listUrl(s, s.nextBefore));
      if (s.closed || gen !== s.loadGen) return; // the list was reloaded meanwhile
      if (s.lastBulk <= page.last_seq) break;
    }
    if (s.lastBulk > page.last_seq) { reload(s); return; }
    s.nextBefore = page.next_before;
    for (const n of page.items) {
      if (s.items.has(n.id)) continue;
      // Changed by an event newer than the page: the page's copy is stale.
      if ((s.touched.get(n.id) ?? 0) > page.last_seq) fetchInto(s, n.id);
      else insertItem(s, n);
    }
    renderMeta(s);
  } catch (err) {
    if (!err.signedOut) showError(t('loadOlderFailed', { error: err.message }));
  } finally {
    ui.loadOlder.disabled = false;
  }
}

/**
 * Shows `n` where it belongs: in its place by seq if the current view holds
 * it (replacing an older copy in place), nowhere otherwise. `announce`: the
 * message that tells screen readers about it.
 */
function place(s, n, announce = null) {
  noteCategory(s, n.category);
  const item = s.items.get(n.id);
  const loaded = s.nextBefore == null || n.seq >= s.nextBefore; // older ones come with "load older"
  if (!belongs(s, n) || !loaded) {
    if (item) removeItem(s, item);
    return;
  }
  if (item) replaceItem(item, n);
  else insertItem(s, n);
  if (announce) ui.announce.textContent = t(announce, { title: n.title });
  if (!n.seen_at) wantSeen(s);
}

const belongs = (s, n) => VIEWS[s.view].holds(n) && (!s.category || n.category === s.category);

/** Changes the shown copy of a notification; false when the view does not show it. */
function patch(s, id, change) {
  const item = s.items.get(id);
  if (!item) return false;
  change(item.n);
  if (belongs(s, item.n)) renderItemState(item);
  else removeItem(s, item);
  return true;
}

/**
 * Fetches one notification that may now belong in the view. Its answer is
 * current as of some moment after the event that asked for it; if another
 * event about it was applied while the request ran, that moment is unknown,
 * so it asks again.
 */
async function fetchInto(s, id, attempt = 0) {
  const gen = s.loadGen;
  const asked = s.lastSeq;
  let n;
  try {
    n = await api(s, `/v1/me/notifications/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.signedOut || s.closed || gen !== s.loadGen) return;
    if (err.status !== 404) reload(s); // gone is fine; anything else: start from a fresh snapshot
    return;
  }
  if (s.closed || gen !== s.loadGen) return;
  if ((s.touched.get(id) ?? 0) > asked) {
    if (attempt < 3) fetchInto(s, id, attempt + 1); else reload(s);
    return;
  }
  place(s, n);
  renderMeta(s);
}

function bulk(s, type, { up_to_seq: upTo, category = null, ...d }) {
  const matches = n => n.seq <= upTo && (category == null || n.category === category);
  for (const item of [...s.items.values()]) {
    if (!matches(item.n)) continue;
    const n = item.n;
    if (type === 'deleted_all') { removeItem(s, item); continue; }
    if (type === 'read_all') { n.read_at ??= d.read_at || nowIso(); n.seen_at ??= n.read_at; }
    if (type === 'seen_all') n.seen_at ??= d.seen_at || nowIso();
    if (type === 'archived_all') n.archived_at ??= d.archived_at || nowIso();
    if (belongs(s, n)) renderItemState(item);
    else removeItem(s, item);
  }
  // Which notifications just became archived is known only to the server.
  if (type === 'archived_all' && s.view === 'archived') reload(s);
}

function dropItem(s, id) {
  const item = s.items.get(id);
  if (item) removeItem(s, item);
}

function removeItem(s, item) {
  s.items.delete(item.n.id);
  // Keep keyboard focus in the list instead of dropping it to <body>.
  if (item.li.contains(document.activeElement)) {
    const neighbour = item.li.nextElementSibling || item.li.previousElementSibling;
    (neighbour?.querySelector('button') || ui.markAll).focus();
  }
  item.li.remove();
}

/**
 * What the open list shows on screen counts as seen: when the list is opened,
 * when the page becomes visible, after a load, and when an unseen
 * notification appears in it. Only notifications the page has (up to its
 * last applied seq) are marked, and only those of the category shown. A
 * short delay lets a burst of arrivals go out as one request.
 */
function wantSeen(s) {
  clearTimeout(s.seenTimer);
  s.seenTimer = setTimeout(() => seeAll(s), 150);
}

async function seeAll(s) {
  if (s.closed || !s.ready || s.view !== 'inbox' || !panelOpen) return;
  if (document.visibilityState !== 'visible') return;
  // Nothing unseen, or already asked for everything we have: each request
  // emits an event, so never send one that cannot change anything.
  if (s.unseen <= 0 || s.lastSeq <= s.seenUpTo) return;
  const upTo = s.lastSeq;
  s.seenUpTo = upTo;
  const json = { up_to_seq: upTo };
  if (s.category) json.category = s.category;
  try {
    await api(s, '/v1/me/notifications/seen-all', { method: 'POST', json });
  } catch {
    // Not the reader's doing, so no error shown: the next chance tries again.
    if (s.seenUpTo === upTo) s.seenUpTo = -1;
  }
}

// -------------------------------------------------------------- rendering

function insertItem(s, n) {
  const item = { n, li: renderItem(n) };
  // Newest first by seq; live and "load older" items land in their place.
  const before = [...ui.list.children].find(li => Number(li.dataset.seq) < n.seq) || null;
  ui.list.insertBefore(item.li, before);
  s.items.set(n.id, item);
  noteCategory(s, n.category);
}

/** A new copy of a shown notification (an update in place): same place, focus kept on the same control. */
function replaceItem(item, n) {
  const li = renderItem(n);
  const focused = item.li.contains(document.activeElement) ? document.activeElement.className : null;
  item.li.replaceWith(li);
  item.n = n;
  item.li = li;
  if (focused) (li.getElementsByClassName(focused)[0] || li.querySelector('button'))?.focus();
}

/**
 * An action's URL if it is an absolute http(s) URL, else null. The server
 * accepts no other, but whatever reaches the page (a relayed event included)
 * is checked again before it becomes a link.
 */
function safeUrl(raw) {
  if (typeof raw !== 'string') return null;
  let url;
  try { url = new URL(raw); } catch { return null; } // relative or malformed
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
}

function renderItem(n) {
  const li = el('li', 'notification');
  li.dataset.id = n.id;
  li.dataset.seq = String(n.seq);

  const content = el('div', 'content');
  const head = el('div', 'head');
  head.append(el('span', 'visually-hidden unread-flag'), el('h3', 'title', n.title));
  if (n.category) head.append(el('span', 'category', n.category));
  content.append(head);
  if (n.body) content.append(el('p', 'body', n.body));
  content.append(el('div', 'cta'));
  const time = el('time', 'time');
  time.dateTime = n.created_at;
  content.append(time);

  const actions = el('div', 'actions');
  const toggle = el('button', 'read-toggle');
  const archive = el('button', 'archive-toggle');
  const del = el('button', 'delete');
  toggle.type = archive.type = del.type = 'button';
  actions.append(toggle, archive);
  // Snoozing hides a notification from the inbox; an archived one is hidden already.
  if (!n.archived_at) actions.append(snoozeMenu());
  actions.append(del);

  li.append(content, actions);
  renderItemTexts({ n, li });
  return li;
}

/** A disclosure with the snooze choices; the times are the reader's local ones. */
function snoozeMenu() {
  const menu = el('details', 'snooze');
  const summary = el('summary', 'snooze-button');
  const choices = el('div', 'snooze-menu');
  for (const choice of Object.keys(SNOOZES)) {
    const option = el('button', 'snooze-option');
    option.type = 'button';
    option.dataset.snooze = choice;
    choices.append(option);
  }
  menu.append(summary, choices);
  return menu;
}

/** When each snooze choice ends, from `now`: in an hour, tomorrow 9:00, next Monday 9:00. */
const SNOOZES = {
  hour: now => new Date(now.getTime() + 3600 * 1000),
  tomorrow: now => new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9),
  week: now => new Date(now.getFullYear(), now.getMonth(), now.getDate() + ((8 - now.getDay()) % 7 || 7), 9),
};
const SNOOZE_TEXTS = { hour: 'snoozeHour', tomorrow: 'snoozeTomorrow', week: 'snoozeNextWeek' };

/** The item's texts in the current language. */
function renderItemTexts({ n, li }) {
  li.querySelector('.unread-flag').textContent = t('unreadFlag');
  const time = li.querySelector('time');
  time.textContent = relativeTime(n.created_at);
  time.title = fullTime(n.created_at);
  const del = li.querySelector('.delete');
  del.textContent = t('delete');
  del.setAttribute('aria-label', t('deleteLabel', { title: n.title }));
  const summary = li.querySelector('.snooze-button');
  if (summary) {
    summary.textContent = t('snooze');
    summary.setAttribute('aria-label', t('snoozeLabel', { title: n.title }));
    const nine = new Date();
    nine.setHours(9, 0, 0, 0);
    for (const option of li.querySelectorAll('.snooze-option')) {
      option.textContent = t(SNOOZE_TEXTS[option.dataset.snooze], { time: clockTime(nine) });
    }
  }
  renderItemState({ n, li });
}

/** The parts of an item that follow its state: read, archived, the action taken. */
function renderItemState({ n, li }) {
  const unread = !n.read_at;
  li.classList.toggle('unread', unread);
  li.querySelector('.unread-flag').hidden = !unread;
  li.querySelector('.read-toggle').textContent = t(unread ? 'markRead' : 'markUnread');
  const archive = li.querySelector('.archive-toggle');
  archive.textContent = t(n.archived_at ? 'unarchive' : 'archive');
  archive.setAttribute('aria-label', t(n.archived_at ? 'unarchiveLabel' : 'archiveLabel', { title: n.title }));
  renderCta({ n, li });
}

/**
 * The notification's own actions: a button each, or a link that opens in a
 * new tab when the action has a safe URL; once one is taken, only its outcome.
 */
function renderCta({ n, li }) {
  const cta = li.querySelector('.cta');
  const actions = Array.isArray(n.actions) ? n.actions.filter(a => a && typeof a === 'object') : [];
  const hadFocus = cta.contains(document.activeElement);
  cta.hidden = actions.length === 0 && !n.action_taken;
  if (n.action_taken) {
    const chosen = actions.find(a => a.id === n.action_taken.id);
    const outcome = el('p', 'outcome', t('actionTaken', { label: chosen?.label ?? n.action_taken.id }));
    outcome.tabIndex = -1; // takes the focus from the button that disappears
    cta.replaceChildren(outcome);
    if (hadFocus) outcome.focus();
    return;
  }
  cta.replaceChildren(...actions.map(action => {
    const href = safeUrl(action.url);
    let node;
    if (href) {
      node = el('a', 'cta-button', action.label);
      node.href = href;
      node.target = '_blank';
      node.rel = 'noopener noreferrer';
      node.append(el('span', 'visually-hidden', ` ${t('newTab')}`));
    } else {
      node = el('button', 'cta-button', action.label);
      node.type = 'button';
    }
    node.dataset.action = String(action.id);
    return node;
  }));
}

function renderMeta(s) {
  ui.unread.textContent = String(s.unread);
  ui.unread.classList.toggle('zero', s.unread === 0);
  ui.unreadSummary.textContent = count('unread', s.unread);
  ui.unseen.textContent = String(s.unseen);
  ui.unseen.classList.toggle('zero', s.unseen === 0);
  const bell = count('bellLabel', s.unseen);
  ui.bell.setAttribute('aria-label', bell);
  ui.bell.title = bell;
  document.title = s.unread ? `(${s.unread}) Herald` : 'Herald';
  ui.empty.hidden = !s.ready || s.items.size > 0;
  ui.loadOlder.hidden = s.nextBefore == null;
  document.body.dataset.lastSeq = String(s.lastSeq);
}

/** The selected tab, and the texts that depend on the view. */
function renderView(s) {
  for (const tab of ui.tabs) {
    const selected = tab.dataset.view === s.view;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1; // arrow keys move between tabs
    if (selected) ui.view.setAttribute('aria-labelledby', tab.id);
  }
  ui.empty.dataset.i18n = s.view === 'archived' ? 'emptyArchived' : 'empty';
  ui.empty.textContent = t(ui.empty.dataset.i18n);
}

function renderPanel() {
  ui.center.hidden = !S || !panelOpen;
  ui.bell.setAttribute('aria-expanded', String(panelOpen));
}

function noteCategory(s, category) {
  if (!category || s.categories.has(category)) return;
  s.categories.add(category);
  const option = el('option', null, category);
  option.value = category;
  ui.filter.append(option);
  renderPreferences(s);
}

// ------------------------------------------------------------ preferences

/**
 * Asks for the preferences after a load: the list's snapshot comes first, so
 * any change after it arrives as an event with a later seq. An event applied
 * while this request ran is at least as new as its answer, which is dropped.
 */
async function loadPreferences(s) {
  const gen = s.loadGen;
  const events = s.prefsEvents;
  let doc;
  try {
    doc = await api(s, '/v1/me/preferences');
  } catch {
    return; // shown as they were; the next load asks again
  }
  if (s.closed || gen !== s.loadGen || events !== s.prefsEvents) return;
  setPreferences(s, doc?.categories);
}

/** A preferences document's `categories`, `{"<category>": {"enabled": bool}}`. */
function setPreferences(s, categories) {
  s.prefs = new Map(Object.entries(categories && typeof categories === 'object' ? categories : {})
    .filter(([, p]) => typeof p?.enabled === 'boolean')
    .map(([category, p]) => [category, p.enabled]));
  renderPreferences(s);
}

/**
 * One switch per category, in the reader's alphabetical order. Rows that
 * exist are updated in place (a moved row would lose the keyboard focus).
 */
function renderPreferences(s) {
  const categories = [...new Set([...s.categories, ...s.prefs.keys()])]
    .sort((a, b) => a.localeCompare(b, language()));
  const rows = new Map([...ui.preferences.children].map(li => [li.dataset.category, li]));
  categories.forEach((category, i) => {
    const li = rows.get(category) || preferenceRow(category);
    rows.delete(category);
    const input = li.querySelector('input');
    input.checked = s.prefs.get(category) ?? true;
    input.setAttribute('aria-label', t('preferenceLabel', { category }));
    li.querySelector('.pref-state').textContent = t(input.checked ? 'preferenceOn' : 'preferenceOff');
    if (ui.preferences.children[i] !== li) ui.preferences.insertBefore(li, ui.preferences.children[i] || null);
  });
  for (const li of rows.values()) li.remove();
  ui.preferencesEmpty.hidden = categories.length > 0;
}

function preferenceRow(category) {
  const li = el('li', 'pref');
  li.dataset.category = category;
  const label = el('label', 'pref-label');
  const input = el('input', 'pref-switch');
  input.type = 'checkbox';
  input.setAttribute('role', 'switch');
  label.append(el('span', 'pref-name', category), input, el('span', 'pref-state'));
  li.append(label);
  return li;
}

function refreshTimes() {
  for (const time of ui.list.querySelectorAll('time')) time.textContent = relativeTime(time.dateTime);
}

function showConnection(connection, transport, relayed = false) {
  connectionShown = { connection, transport, relayed };
  const body = document.body;
  body.dataset.connection = connection;
  if (transport) body.dataset.transport = transport;
  else delete body.dataset.transport;
  ui.connection.dataset.state = connection;
  const label = t(connection);
  ui.connection.textContent = transport ? `${label} · ${t(transport)}` : label;
  ui.connection.title = relayed ? t('sharedConnection') : '';
}

/** `message`: the key of the text to show above the form, if any. */
function showSignin(message = null) {
  ui.center.hidden = true;
  ui.account.hidden = true;
  ui.bell.hidden = true;
  ui.list.replaceChildren();
  ui.unread.textContent = '0';
  ui.unread.classList.add('zero');
  ui.unseen.textContent = '0';
  ui.unseen.classList.add('zero');
  document.title = 'Herald';
  signinMessage = message;
  ui.signinMessage.textContent = message ? t(message) : '';
  ui.signinMessage.hidden = !message;
  ui.tokenInput.value = '';
  ui.signin.hidden = false;
  ui.settings.hidden = true;
  ui.preferences.replaceChildren();
  showConnection('closed', null);
}

/** Whose center this is, always in view: the token's `sub`. */
function renderAccount(s) {
  ui.signedInAs.replaceChildren(...tNodes('signedInAs', { user: Object.assign(userName(s.sub), { id: 'user' }) }));
}

function renderSwitch() {
  if (!offered) return;
  const { sub: next, current } = offered;
  ui.switchText.replaceChildren(...tNodes('switchText', { next: userName(next), current: userName(current) }));
  ui.switchWarning.replaceChildren(...tNodes('switchWarning', { next: userName(next) }));
  ui.switchKeep.replaceChildren(...tNodes('switchKeep', { current: userName(current) }));
  ui.switchAccept.replaceChildren(...tNodes('switchAccept', { next: userName(next) }));
}

/** Puts every visible text in the current language. */
function renderTexts() {
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  ui.language.value = language();
  const { connection, transport, relayed } = connectionShown;
  showConnection(connection, transport, relayed);
  ui.signinMessage.textContent = signinMessage ? t(signinMessage) : '';
  ui.views.setAttribute('aria-label', t('views'));
  renderSwitch();
  if (S) {
    renderAccount(S);
    renderView(S);
    for (const item of S.items.values()) renderItemTexts(item);
    renderPreferences(S);
    renderMeta(S);
  }
}

function showCenter(s) {
  ui.signin.hidden = true;
  ui.error.hidden = true;
  renderAccount(s);
  ui.account.hidden = false;
  ui.list.replaceChildren();
  const all = Object.assign(el('option', null, t('all')), { value: '' });
  all.dataset.i18n = 'all';
  ui.filter.replaceChildren(all);
  ui.empty.hidden = true;
  ui.loadOlder.hidden = true;
  ui.bell.hidden = false;
  ui.preferences.replaceChildren();
  ui.settings.hidden = false;
  renderPreferences(s);
  renderView(s);
  renderPanel();
  renderMeta(s);
  document.body.dataset.lastSeq = '0';
}

// ----------------------------------------------------------------- wiring

/**
 * Sends a change; the UI follows when its event arrives, only failures show
 * here. Buttons stay enabled: the event may beat the response, and repeating
 * a change is harmless (actions are the exception, see takeAction). True when
 * the server took it.
 */
async function act(url, method, failure, json) {
  const s = S;
  if (!s) return false;
  try {
    await api(s, url, { method, json });
    return true;
  } catch (err) {
    if (!err.signedOut) showError(t(failure, { error: err.message }));
    return false;
  }
}

ui.list.addEventListener('click', e => {
  const control = e.target.closest('button, a');
  const li = control?.closest('li.notification');
  if (!li || !S) return;
  const item = S.items.get(li.dataset.id);
  const base = `/v1/me/notifications/${encodeURIComponent(li.dataset.id)}`;
  const is = name => control.classList.contains(name);
  if (is('read-toggle')) {
    const unread = li.classList.contains('unread');
    act(`${base}/${unread ? 'read' : 'unread'}`, 'POST', unread ? 'readFailed' : 'unreadFailed');
  } else if (is('archive-toggle')) {
    const archived = Boolean(item?.n.archived_at);
    act(`${base}/${archived ? 'unarchive' : 'archive'}`, 'POST', archived ? 'unarchiveFailed' : 'archiveFailed');
  } else if (is('snooze-option')) {
    control.closest('details').open = false;
    const until = SNOOZES[control.dataset.snooze](new Date());
    act(`${base}/snooze`, 'POST', 'snoozeFailed', { until: until.toISOString() });
  } else if (is('cta-button')) {
    takeAction(li, `${base}/actions/${encodeURIComponent(control.dataset.action)}`);
  } else if (is('delete')) {
    act(base, 'DELETE', 'deleteFailed');
  }
});

/**
 * Only the first action counts (a second one is refused), so the buttons are
 * disabled while it is sent; the outcome replaces them when the `action`
 * event arrives. A link opens its URL in a new tab as well (the browser's
 * default, not prevented).
 */
async function takeAction(li, url) {
  const buttons = [...li.querySelectorAll('button.cta-button')];
  for (const button of buttons) button.disabled = true;
  if (!(await act(url, 'POST', 'actionFailed'))) {
    for (const button of buttons) button.disabled = false;
  }
}

/** Switches between the inbox and the archive, each loaded afresh. */
function showView(view) {
  const s = S;
  if (!s || s.view === view || !Object.hasOwn(VIEWS, view)) return;
  s.view = view;
  renderView(s);
  reload(s);
}

ui.views.addEventListener('click', e => {
  const tab = e.target.closest('[role="tab"]');
  if (tab) showView(tab.dataset.view);
});

// Tabs pattern: arrow keys, Home and End move between the tabs and select.
ui.views.addEventListener('keydown', e => {
  const at = ui.tabs.indexOf(document.activeElement);
  if (at < 0) return;
  const to = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: ui.tabs.length - 1 }[e.key];
  if (to === undefined) return;
  e.preventDefault();
  const tab = ui.tabs[(to + ui.tabs.length) % ui.tabs.length];
  tab.focus();
  showView(tab.dataset.view);
});

ui.bell.addEventListener('click', () => {
  panelOpen = !panelOpen;
  renderPanel();
  if (S && panelOpen) wantSeen(S);
});

// Back to a tab that was in the background: what the open list shows is now seen.
document.addEventListener('visibilitychange', () => { if (S) wantSeen(S); });

// One snooze menu open at a time; a click elsewhere or Escape closes it.
document.addEventListener('click', e => {
  for (const menu of document.querySelectorAll('details.snooze[open]')) {
    if (!menu.contains(e.target)) menu.open = false;
  }
});
document.addEventListener('keydown', e => {
  if (e.key !== 'Escape') return;
  for (const menu of document.querySelectorAll('details.snooze[open]')) {
    menu.open = false;
    if (menu.contains(document.activeElement)) menu.querySelector('summary').focus();
  }
});

// A switch flipped: the change is sent, and shown for good when its event
// arrives; if it fails, the switch goes back to what the server has.
ui.preferences.addEventListener('change', async e => {
  const input = e.target.closest('input.pref-switch');
  const s = S;
  if (!input || !s) return;
  const category = input.closest('li').dataset.category;
  input.closest('li').querySelector('.pref-state').textContent = t(input.checked ? 'preferenceOn' : 'preferenceOff');
  const url = `/v1/me/preferences/categories/${encodeURIComponent(category)}`;
  if (!(await act(url, 'PUT', 'preferenceFailed', { enabled: input.checked })) && S === s) renderPreferences(s);
});

ui.markAll.addEventListener('click', () =>
  act('/v1/me/notifications/read-all', 'POST', 'readAllFailed'));

ui.loadOlder.addEventListener('click', () => { if (S) loadOlder(S); });

ui.filter.addEventListener('change', () => {
  if (!S) return;
  S.category = ui.filter.value;
  reload(S);
});

ui.signout.addEventListener('click', () => { if (S) signOut(S); });

ui.signin.addEventListener('submit', e => {
  e.preventDefault();
  // Typed or pasted by the reader: theirs to choose, so no question asked.
  const token = ui.tokenInput.value.trim();
  if (token) startSession(token);
});

// A new #token= link opened in this tab changes only the fragment.
addEventListener('hashchange', () => {
  const token = tokenFromUrl();
  if (token) offerToken(token);
});

// Declined (or Escape): the link's token is dropped; the current session never stopped.
ui.switchDialog.addEventListener('close', () => {
  const offer = offered;
  offered = null;
  if (offer && ui.switchDialog.returnValue === 'switch') startSession(offer.token);
});

ui.language.replaceChildren(...Object.entries(LANGUAGES).map(([tag, name]) => {
  const option = el('option', null, name);
  option.value = tag;
  option.lang = tag; // each name is read in its own language
  return option;
}));
ui.language.addEventListener('change', () => {
  setLanguage(ui.language.value);
  renderTexts();
});

// Closing tab: tell the followers at once; the lock (or the heartbeat 'bye') hands leadership on.
addEventListener('pagehide', () => { if (S) resign(S); });
// Back from the back/forward cache the connection is gone: start afresh.
addEventListener('pageshow', e => { if (e.persisted) location.reload(); });

setInterval(refreshTimes, 30000);

{
  renderTexts();
  const link = tokenFromUrl();
  const saved = stored('sessionStorage') || stored('localStorage');
  const savedClaims = saved && usableClaims(saved);
  // Resume the saved session (unless it has expired and a link brings
  // another); the link is then offered as a replacement.
  if (savedClaims && !(link && expired(savedClaims.exp))) startSession(saved, savedClaims);
  if (link) offerToken(link);
  else if (!S) showSignin();
}
