/*
 * Herald message center (browser page): only what the reader sees and does.
 *
 * Everything about the user's log is herald-client's, the module Herald
 * serves at /client/herald.js (the npm package of clients/js): loading the
 * first page, applying each event once by seq, `reset`, counts from the
 * events, optimistic changes reconciled by the log, paging, reconnecting
 * over SSE, WebSocket or long-polling, and one live connection shared by all
 * of a user's tabs. This page renders the client's state whenever it changes
 * and turns the reader's clicks into the client's calls; a failed call shows
 * an error (the client has already rolled the change back).
 *
 * Every visible text comes from the message table of the reader's language
 * (i18n.js); switching language re-renders the texts in place.
 *
 * The badges show the client's counts, which come only from the `counts`
 * every event carries (and the list answer's totals after a load): counts
 * derived from a partial list could never be exact, the server's are.
 *
 * The settings panel has a switch per category (those of the loaded
 * notifications and those the user has set), showing the client's
 * preferences, so a change made in another tab or on another device appears
 * live; a flipped switch keeps its place until the change's event arrives,
 * and goes back if the change fails.
 */
import { createClient } from '/client/herald.js';
import {
  LANGUAGES, language, setLanguage, t, tNodes, count, relativeTime, fullTime, clockTime,
} from '/i18n.js';

const TOKEN_KEY = 'herald.token';
const VIEWS = ['inbox', 'archived'];

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

/** Why a call failed, for the reader: the server's problem, or that it could not be reached. */
function reason(err) {
  const p = err.problem || {};
  if (err.status == null) return t('unreachable');
  return [p.title, p.detail].filter(Boolean).join(': ') || err.message;
}

// ---------------------------------------------------------------- session

/**
 * The transports, in order: SSE where the browser has EventSource (the
 * client reads the stream with fetch, but a browser without EventSource is
 * one whose streaming is not to be trusted), WebSocket, long-polling.
 * `?transport=ws` or `?transport=poll` forces one.
 */
function transports() {
  const forced = new URLSearchParams(location.search).get('transport');
  if (['sse', 'ws', 'poll'].includes(forced)) return [forced];
  return [window.EventSource && 'sse', window.WebSocket && 'ws', 'poll'].filter(Boolean);
}

function startSession(token, claims = usableClaims(token)) {
  if (!claims) {
    showSignin('invalidToken');
    return;
  }
  if (S) signOut(S);
  store('sessionStorage', token);
  store('localStorage', token);
  const s = {
    token,
    sub: claims.sub,
    exp: Number(claims.exp),
    items: new Map(),      // id -> { n, li }: what the list shows
    categories: new Set(),
    switching: new Map(),  // category -> enabled: switches flipped, waiting for their event
    seenUpTo: -1,          // up_to_seq of the last seen-all sent
    offs: [],
    closed: false,
  };
  // The page's token is the reader's own (a link or the sign-in box): there
  // is no fresher one to give, so a refused one signs out.
  s.client = createClient({ url: location.origin, getToken: () => s.token, transports: transports() });
  S = s;
  showCenter(s);
  showConnection('connecting', null);
  s.offs.push(
    s.client.subscribe(() => render(s)),
    s.client.on('event', ev => arrived(s, ev)),
    s.client.on('error', err => {
      if (err.status === 401) signOut(s, 'expired');
      else if (!s.client.ready) showError(t('loadFailed', { error: reason(err) }));
    }),
  );
  s.client.start().then(() => wantSeen(s), err => {
    if (err.status === 401) signOut(s, 'expired');
    else if (!s.closed) showError(t('loadFailed', { error: reason(err) }));
  });
}

/** `message`: the key of the text the sign-in form shows. */
function signOut(s, message = 'signedOut') {
  if (s.closed) return;
  s.closed = true;
  for (const off of s.offs) off();
  s.client.stop();
  clearTimeout(s.seenTimer);
  if (S !== s) return;
  S = null;
  store('sessionStorage', null);
  // Another tab may have signed in someone else since: leave theirs.
  if (stored('localStorage') === s.token) store('localStorage', null);
  showSignin(message);
}

// ----------------------------------------------------------- the client

/** Everything the client shows, after every change it made. */
function render(s) {
  if (s.closed) return;
  const c = s.client;
  showConnection(c.state, c.transport, !c.leader);
  renderList(s);
  renderPreferences(s);
  renderMeta(s);
}

/** An applied event: what screen readers hear, and the categories the filter offers. */
function arrived(s, { type, data }) {
  if (s.closed || (type !== 'notification' && type !== 'updated') || !data) return;
  noteCategory(s, data.category);
  if (!s.items.has(data.id)) return; // not in the view shown
  ui.announce.textContent = t(type === 'notification' ? 'newNotification' : 'updatedNotification', { title: data.title });
  if (!data.seen_at) wantSeen(s);
}

/**
 * The list as the client has it, newest first. Items already shown stay
 * (so keyboard focus stays); a changed one is updated in place, rendered
 * anew only when its content changed (an update by key).
 */
function renderList(s) {
  const shown = new Map();
  let at = ui.list.firstElementChild;
  for (const n of s.client.notifications) {
    noteCategory(s, n.category);
    let item = s.items.get(n.id);
    const placed = item?.li === at; // already where it belongs
    if (!item) {
      item = { n, li: renderItem(n) };
    } else if (item.n !== n) {
      if (n.updated_at !== item.n.updated_at || n.title !== item.n.title) replaceItem(item, n); // takes the old one's place
      else renderItemState(Object.assign(item, { n }));
    }
    shown.set(n.id, item);
    if (placed) at = item.li.nextElementSibling;
    else ui.list.insertBefore(item.li, at);
  }
  for (const [id, item] of s.items) if (!shown.has(id)) removeItem(item);
  s.items = shown;
}

function removeItem(item) {
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
 * notification appears in it. Only notifications the client has (up to its
 * last applied seq) are marked, and only those of the category shown. A
 * short delay lets a burst of arrivals go out as one request.
 */
function wantSeen(s) {
  clearTimeout(s.seenTimer);
  s.seenTimer = setTimeout(() => seeAll(s), 150);
}

async function seeAll(s) {
  const c = s.client;
  if (s.closed || !c.ready || c.filter.view !== 'inbox' || !panelOpen) return;
  if (document.visibilityState !== 'visible') return;
  // Nothing unseen, or already asked for everything we have: each request
  // emits an event, so never send one that cannot change anything.
  if (c.counts.unseen <= 0 || c.lastSeq <= s.seenUpTo) return;
  const upTo = c.lastSeq;
  s.seenUpTo = upTo;
  try {
    await c.markAllSeen({ category: c.filter.category });
  } catch {
    // Not the reader's doing, so no error shown: the next chance tries again.
    if (s.seenUpTo === upTo) s.seenUpTo = -1;
  }
}

// -------------------------------------------------------------- rendering

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
  const { unread, unseen } = s.client.counts;
  ui.unread.textContent = String(unread);
  ui.unread.classList.toggle('zero', unread === 0);
  ui.unreadSummary.textContent = count('unread', unread);
  ui.unseen.textContent = String(unseen);
  ui.unseen.classList.toggle('zero', unseen === 0);
  const bell = count('bellLabel', unseen);
  ui.bell.setAttribute('aria-label', bell);
  ui.bell.title = bell;
  document.title = unread ? `(${unread}) Herald` : 'Herald';
  ui.empty.hidden = !s.client.ready || s.items.size > 0;
  ui.loadOlder.hidden = !s.client.hasMore;
  document.body.dataset.lastSeq = String(s.client.lastSeq);
}

/** The selected tab, and the texts that depend on the view. */
function renderView(s) {
  const { view } = s.client.filter;
  for (const tab of ui.tabs) {
    const selected = tab.dataset.view === view;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1; // arrow keys move between tabs
    if (selected) ui.view.setAttribute('aria-labelledby', tab.id);
  }
  ui.empty.dataset.i18n = view === 'archived' ? 'emptyArchived' : 'empty';
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

/** The user's switches: the client's preferences, and those flipped here whose event has not come yet. */
function preferencesOf(s) {
  const categories = s.client.preferences?.categories;
  const prefs = new Map(Object.entries(categories && typeof categories === 'object' ? categories : {})
    .filter(([, p]) => typeof p?.enabled === 'boolean')
    .map(([category, p]) => [category, p.enabled]));
  for (const [category, enabled] of s.switching) {
    if ((prefs.get(category) ?? true) === enabled) s.switching.delete(category); // its event came
    else prefs.set(category, enabled);
  }
  return prefs;
}

/**
 * One switch per category, in the reader's alphabetical order. Rows that
 * exist are updated in place (a moved row would lose the keyboard focus).
 */
function renderPreferences(s) {
  const prefs = preferencesOf(s);
  const categories = [...new Set([...s.categories, ...prefs.keys()])]
    .sort((a, b) => a.localeCompare(b, language()));
  const rows = new Map([...ui.preferences.children].map(li => [li.dataset.category, li]));
  categories.forEach((category, i) => {
    const li = rows.get(category) || preferenceRow(category);
    rows.delete(category);
    const input = li.querySelector('input');
    input.checked = prefs.get(category) ?? true;
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
 * Runs one of the client's changes; it shows at once and the log confirms
 * it, so only a failure shows here. True when the server took it.
 */
async function act(change, failure) {
  const s = S;
  if (!s) return false;
  try {
    await change(s.client);
    return true;
  } catch (err) {
    if (!s.closed && err.status !== 401) showError(t(failure, { error: reason(err) }));
    return false;
  }
}

ui.list.addEventListener('click', e => {
  const control = e.target.closest('button, a');
  const li = control?.closest('li.notification');
  if (!li || !S) return;
  const item = S.items.get(li.dataset.id);
  const id = li.dataset.id;
  const is = name => control.classList.contains(name);
  if (is('read-toggle')) {
    const unread = li.classList.contains('unread');
    act(c => (unread ? c.markRead(id) : c.markUnread(id)), unread ? 'readFailed' : 'unreadFailed');
  } else if (is('archive-toggle')) {
    const archived = Boolean(item?.n.archived_at);
    act(c => (archived ? c.unarchive(id) : c.archive(id)), archived ? 'unarchiveFailed' : 'archiveFailed');
  } else if (is('snooze-option')) {
    control.closest('details').open = false;
    const until = SNOOZES[control.dataset.snooze](new Date());
    act(c => c.snooze(id, until), 'snoozeFailed');
  } else if (is('cta-button')) {
    takeAction(li, id, control.dataset.action);
  } else if (is('delete')) {
    act(c => c.remove(id), 'deleteFailed');
  }
});

/**
 * Only the first action counts (a second one is refused), so the buttons are
 * disabled while it is sent; the outcome replaces them at once. A link opens
 * its URL in a new tab as well (the browser's default, not prevented).
 */
async function takeAction(li, id, action) {
  const buttons = [...li.querySelectorAll('button.cta-button')];
  for (const button of buttons) button.disabled = true;
  if (!(await act(c => c.act(id, action), 'actionFailed'))) {
    for (const button of buttons) button.disabled = false;
  }
}

/** Switches between the inbox and the archive, each loaded afresh. */
function showView(view) {
  const s = S;
  if (!s || s.client.filter.view === view || !VIEWS.includes(view)) return;
  const loading = s.client.setFilter({ view });
  renderView(s);
  loading.then(() => wantSeen(s), () => {});
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

// A switch flipped: the change is sent, and the switch stays as flipped
// until its event arrives; if it fails, it goes back to what the server has.
ui.preferences.addEventListener('change', async e => {
  const input = e.target.closest('input.pref-switch');
  const s = S;
  if (!input || !s) return;
  const category = input.closest('li').dataset.category;
  s.switching.set(category, input.checked);
  renderPreferences(s);
  if (!(await act(c => c.setPreference(category, input.checked), 'preferenceFailed')) && S === s) {
    s.switching.delete(category);
    renderPreferences(s);
  }
});

ui.markAll.addEventListener('click', () => act(c => c.markAllRead(), 'readAllFailed'));

ui.loadOlder.addEventListener('click', async () => {
  if (!S) return;
  ui.loadOlder.disabled = true;
  await act(c => c.loadMore(), 'loadOlderFailed');
  ui.loadOlder.disabled = false;
});

ui.filter.addEventListener('change', () => {
  const s = S;
  if (!s) return;
  s.client.setFilter({ category: ui.filter.value || null }).then(() => wantSeen(s), () => {});
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
