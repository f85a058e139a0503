/*
 * herald-client: a user's Herald message center, kept exact from the
 * server's per-user event log.
 *
 * Everything a user's center shows follows from one ordered log: each event
 * has a `seq`, and the server promises that a client resuming after seq N
 * gets every later event exactly once, in order. So the client keeps one
 * number, the last seq it applied, and ignores whatever is not above it
 * (duplicates after a reconnect, a second connection during a token swap,
 * relays from another tab). A `reset` means the resume point is unusable:
 * the first page is loaded again and the log continues from its `last_seq`.
 *
 * Counts come only from the server: every event carries the user's counts
 * just after it, and the list answer carries them for its snapshot. Counts
 * derived from a partial list can never be exact; these are.
 *
 * This one file is the browser entry, and also the mini-program entry: given
 * `wx` (or uni-app's `uni`), it speaks through wx.request and
 * wx.connectSocket instead of fetch and WebSocket. It must stay loadable as
 * it is (no build step, no imports), since Herald serves it at
 * /client/herald.js and /client/miniprogram.js.
 */

const PAGE_SIZE = 50;
/** A view's `status` in list requests, and which notifications it holds. */
const VIEWS = {
  inbox: ['all', n => !n.archived_at && !n.snoozed_until],
  // Archived and snoozed at once counts and lists as archived.
  archived: ['archived', n => !!n.archived_at],
  snoozed: ['snoozed', n => !!n.snoozed_until && !n.archived_at],
};
/** Events that can bring a notification the client has never seen into a view: only the server has its fields. */
const ENTERS = {
  inbox: ['unarchived', 'unsnoozed'],
  archived: ['archived'],
  snoozed: ['snoozed', 'unarchived'],
};
const REQUEST_MS = 30000;
const POLL_WAIT_S = 25;
/** A stream with no byte for this long is dead: the server writes a heartbeat at least every 30 s. */
const SILENCE_MS = 45000;
const PING_MS = 25000;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

const isInt = Number.isSafeInteger;
const now = () => Date.now();
const iso = () => new Date().toISOString();
const enc = encodeURIComponent;

/** Delay before reconnect attempt `n` (from 0): doubling up to 30 s, then a random half of it off, so clients that lost the same server do not return in step. */
const backoff = n => Math.min(30000, 500 * 2 ** n) * (0.5 + Math.random() / 2);

/**
 * A JWT's claims, read only to know `sub` (which tabs may share) and `exp`
 * (when to ask for a new token); the server does the real checking. Decoded
 * by hand: mini-programs have neither atob nor TextDecoder.
 */
function claims(token) {
  try {
    let bits = 0;
    let acc = 0;
    let bytes = '';
    for (const ch of token.split('.')[1]) {
      acc = ((acc << 6) | B64URL.indexOf(ch)) & 0xffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes += '%' + ((acc >> bits) & 255).toString(16).padStart(2, '0');
      }
    }
    return JSON.parse(decodeURIComponent(bytes)) || {};
  } catch {
    return {};
  }
}

/** A notification object without the `counts` its event carried beside it. */
function notificationOf(data) {
  const { counts, ...n } = data;
  return n;
}

/**
 * One notification after an event, as the server changed it: a new object,
 * null when the event removed it, or `n` itself when the event is about
 * another one. Timestamps come from the event, so every tab agrees.
 */
function applyTo(n, type, d) {
  const mine = d.id === n.id;
  const bulk = isInt(d.up_to_seq) && n.seq <= d.up_to_seq && (d.category == null || d.category === n.category);
  let p;
  if (mine) {
    switch (type) {
      case 'notification':
      case 'updated': return notificationOf(d);
      case 'deleted':
      case 'expired': return null;
      // Reading implies seeing.
      case 'read': p = { read_at: d.read_at, seen_at: n.seen_at || d.read_at }; break;
      case 'unread': p = { read_at: null }; break;
      case 'seen': p = { seen_at: d.seen_at }; break;
      case 'archived': p = { archived_at: d.archived_at }; break;
      case 'unarchived': p = { archived_at: null }; break;
      case 'snoozed': p = { snoozed_until: d.until }; break;
      case 'unsnoozed': p = { snoozed_until: null }; break;
      // Taking an action also reads it.
      case 'action':
        p = { action_taken: { id: d.action_id, at: d.at }, read_at: d.read_at || n.read_at || d.at, seen_at: n.seen_at || d.at };
        break;
    }
  } else if (bulk) {
    switch (type) {
      case 'deleted_all': return null;
      case 'read_all': p = { read_at: n.read_at || d.read_at, seen_at: n.seen_at || d.read_at }; break;
      case 'seen_all': p = { seen_at: n.seen_at || d.seen_at }; break;
      case 'archived_all': p = { archived_at: n.archived_at || d.archived_at }; break;
    }
  }
  return p ? { ...n, ...p } : n;
}

// ------------------------------------------------------------- platforms

/** fetch, a streaming fetch for SSE, and WebSocket: browsers, Node 18+, workers. */
function webIO(fetchFn, WS) {
  const request = (method, url, headers, body, ms, later, cancel) => {
    const ctl = new AbortController();
    const timer = later(() => ctl.abort(), ms);
    const promise = fetchFn(url, { method, headers, body, signal: ctl.signal, cache: 'no-store' })
      .then(async res => ({ status: res.status, data: await res.json().catch(() => null) }))
      .finally(() => cancel(timer));
    return { promise, abort: () => ctl.abort() };
  };
  return {
    request,
    // A fetch stream instead of EventSource: it sends the token in a
    // header (not in the URL, where proxies log it) and sees the status,
    // so a refused token is told apart from a network failure.
    stream: fetchFn && typeof ReadableStream == 'function' && typeof TextDecoder == 'function'
      ? (url, headers) => {
        const ctl = new AbortController();
        return { promise: fetchFn(url, { headers, signal: ctl.signal, cache: 'no-store' }), abort: () => ctl.abort() };
      }
      : null,
    socket: WS
      ? (url, on) => {
        const s = new WS(url);
        s.onopen = () => on.open();
        s.onmessage = e => on.message(e.data);
        s.onclose = e => on.close(e.code);
        // A close event follows every error; a listener must exist all the
        // same (Node's `ws` throws on an unheard error).
        s.onerror = () => {};
        return {
          send: text => s.send(text),
          close() {
            s.onopen = s.onmessage = s.onclose = null;
            try { s.close(); } catch { /* already closed */ }
          },
        };
      }
      : null,
  };
}

/**
 * WeChat-style APIs (uni-app's `uni` is the same). uni returns a task only
 * when a callback is given, so every call passes `fail`.
 */
function wxIO(wx) {
  return {
    request(method, url, header, data, timeout) {
      let task;
      const promise = new Promise((resolve, reject) => {
        task = wx.request({
          url, method, header, data, timeout, dataType: 'json',
          success: r => resolve({ status: r.statusCode, data: r.data }),
          fail: e => reject(new Error((e && e.errMsg) || 'request failed')),
        });
      });
      return { promise, abort: () => task && task.abort && task.abort() };
    },
    stream: null,
    socket(url, on) {
      let closed = false;
      const close = code => { if (!closed) { closed = true; on.close(code); } };
      const task = wx.connectSocket({ url, fail: () => close(0) });
      task.onOpen(() => on.open());
      task.onMessage(m => on.message(m.data));
      task.onClose(e => close(e && e.code));
      task.onError(() => close(0));
      return {
        send: text => task.send({ data: text }),
        close() { closed = true; try { task.close({ code: 1000 }); } catch { /* never opened */ } },
      };
    },
  };
}

// ---------------------------------------------------------------- client

export function createClient(options = {}) {
  const { url, getToken, wx, share = true, pageSize = PAGE_SIZE } = options;
  if (typeof url != 'string' || typeof getToken != 'function') {
    throw new TypeError('createClient needs { url, getToken }');
  }
  const base = url.replace(/\/+$/, '');
  const fetchFn = options.fetch || (globalThis.fetch && globalThis.fetch.bind(globalThis));
  if (!wx && !fetchFn) throw new TypeError('no fetch here: pass `wx` (or uni) in a mini-program');
  const io = wx ? wxIO(wx) : webIO(fetchFn, options.WebSocket || globalThis.WebSocket);
  const order = (options.transports || ['sse', 'ws', 'poll']).filter(t =>
    t === 'poll' || (t === 'sse' && io.stream) || (t === 'ws' && io.socket));
  if (!order.length) order.push('poll');

  // --- lifecycle: every timer, request and wait of a run, so stop() can end them all
  let running = false;
  let run = 0;
  let started = null;
  const timers = new Set();
  const aborts = new Set();
  const wakers = new Set();
  const later = (fn, ms) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, Math.min(Math.max(ms, 0), 2 ** 31 - 1));
    timers.add(t);
    return t;
  };
  const cancel = t => { clearTimeout(t); timers.delete(t); };
  const every = (fn, ms) => { const t = setInterval(fn, ms); timers.add(t); return t; };
  /** Resolves after `ms`, or at once when the client stops (its caller then sees `run` changed). */
  const sleep = ms => new Promise(resolve => {
    const done = () => { wakers.delete(done); resolve(); };
    wakers.add(done);
    later(done, ms);
  });

  // --- what the client shows
  let state = 'closed';
  let transport = null;
  let lastSeq = 0;       // the last seq applied
  let cursor = 0;        // where a new connection resumes: the last seq received (a reset moves it back)
  let counts = { unread: 0, unseen: 0 };
  let preferences = null;
  let preferenceEvents = 0; // `preferences` events applied (they make an answer asked for before them stale)
  let filter = { view: 'inbox', category: null };
  /** Every notification known, by id, as of `lastSeq`: the loaded pages plus what events brought, in any view. */
  let known = new Map();
  let nextBefore = null; // `before` of the next older page; null when everything is loaded
  let floor = 0;         // known notifications with seq >= floor are all there is (older ones come with loadMore)
  let ready = false;     // false while the first page (re)loads: events wait in `pending`
  let pending = [];
  let gen = 0;           // load generation: an answer for an older one is dropped
  let optimistic = [];   // changes sent, shown until the log has them (or the request failed)
  let reading = 0;       // REST reads in flight, and the events applied meanwhile,
  let journal = [];      // which their (older) answers lack
  let more = null;
  let list = null;
  let snap = null;

  const subscribers = new Set();
  const listeners = { event: new Set(), state: new Set(), error: new Set() };
  /**
   * Calls an application's callback. One that throws must not break the
   * client halfway through applying an event (nor stop a transport's loop):
   * its error is rethrown on its own, where the platform reports it.
   */
  const call = (fn, value) => {
    try { fn(value); } catch (err) { queueMicrotask(() => { throw err; }); }
  };
  const emit = (type, value) => { for (const fn of [...listeners[type]]) call(fn, value); };
  const report = err => { if (running) emit('error', err); };
  function changed() {
    list = snap = null;
    for (const fn of [...subscribers]) call(fn);
  }

  // --- the token
  let token = null;
  let tokenExp = 0;
  let asking = null;
  let refreshTimer;

  /** Asks `getToken` (one call at a time) and takes its answer. */
  function renewToken() {
    return asking || (asking = (async () => {
      try {
        const t = await getToken();
        if (typeof t != 'string' || !t) throw new TypeError('getToken must return a JWT');
        const fresh = t !== token;
        token = t;
        tokenExp = Number(claims(t).exp) * 1000 || 0;
        scheduleRenewal(fresh);
        if (fresh) swapConnection();
        return t;
      } finally {
        asking = null;
      }
    })());
  }

  /**
   * Asks for a new token before this one expires: the server ends live
   * connections at `exp`. A quarter of the time left before it, at most a
   * minute. Asked again and given the same token, it waits longer before
   * asking again.
   */
  function scheduleRenewal(fresh) {
    cancel(refreshTimer);
    if (!tokenExp || !running) return;
    const left = tokenExp - now();
    refreshTimer = later(() => renewToken().catch(report), Math.max(fresh ? 1000 : 5000, left - Math.min(60000, left / 4)));
  }

  // --- REST
  const headers = (t, body) => {
    const h = { Accept: 'application/json', Authorization: `Bearer ${t}` };
    if (body != null) h['Content-Type'] = 'application/json';
    return h;
  };

  /** One request; a 401 asks getToken again and retries once. Errors carry `status` and the problem document. */
  async function api(method, path, body, retried) {
    const t = token || await renewToken();
    const req = io.request(method, base + path, headers(t, body), body == null ? undefined : JSON.stringify(body), REQUEST_MS, later, cancel);
    aborts.add(req.abort);
    let res;
    try {
      res = await req.promise;
    } finally {
      aborts.delete(req.abort);
    }
    if (res.status === 401 && !retried) {
      await renewToken();
      return api(method, path, body, true);
    }
    if (res.status >= 300) {
      const p = res.data && typeof res.data == 'object' ? res.data : {};
      throw Object.assign(new Error(p.detail || p.title || `HTTP ${res.status}`), { status: res.status, problem: p });
    }
    return res.data;
  }

  const listPath = before => {
    let q = `?status=${VIEWS[filter.view][0]}&limit=${pageSize}`;
    if (filter.category != null) q += `&category=${enc(filter.category)}`;
    if (before != null) q += `&before=${before}`;
    return `/v1/me/notifications${q}`;
  };

  /**
   * A REST read runs while events keep arriving, so its answer may miss
   * the newest of them: those applied after `since` are applied again to
   * what it brings (each sets absolute values, so applying the tail of the
   * log again to a state that already has part of it changes nothing).
   */
  async function read(path, since) {
    reading++;
    const mark = journal.length;
    try {
      const answer = await api('GET', path);
      return [answer, journal.slice(mark).filter(ev => ev.seq > (isInt(answer?.last_seq) ? answer.last_seq : since))];
    } finally {
      if (--reading === 0) journal = [];
    }
  }

  const replay = (n, events) => events.reduce((m, ev) => m && applyTo(m, ev.type, ev.data), n);

  /** (Re)loads the first page; its `last_seq` is where the log continues. Retries until it works; a refused token is given up on. */
  async function reload() {
    const g = ++gen;
    ready = false;
    for (let attempt = 0; ; attempt++) {
      let page;
      try {
        page = await api('GET', listPath());
      } catch (err) {
        if (g !== gen || !running) return false;
        if (err.status === 401) throw err;
        report(err);
        await sleep(backoff(attempt));
        if (g !== gen || !running) return false;
        continue;
      }
      if (g !== gen || !running) return false;
      known = new Map(page.items.map(n => [n.id, n]));
      lastSeq = page.last_seq;
      if (cursor < lastSeq) cursor = lastSeq;
      nextBefore = page.next_before;
      floor = nextBefore ?? 0;
      counts = { unread: page.unread_count, unseen: page.unseen_count ?? 0 };
      ready = true;
      for (const ev of pending.splice(0)) {
        // This snapshot already covers a reset queued while it loaded.
        if (ev.type === 'reset' && !(ev.data?.last_seq > lastSeq)) continue;
        apply(ev);
      }
      reconcile();
      changed();
      loadPreferences(g);
      return true;
    }
  }

  /**
   * The preferences document, asked for after the page: a change after the
   * page's snapshot arrives as an event, and an event applied while this
   * request ran is at least as new as its answer, which is then dropped.
   */
  async function loadPreferences(g) {
    const events = preferenceEvents;
    try {
      const doc = await api('GET', '/v1/me/preferences');
      if (g === gen && events === preferenceEvents && doc && typeof doc == 'object') {
        preferences = doc;
        changed();
      }
    } catch (err) {
      if (err.status !== 404) report(err); // a server without preferences: they come with events, if ever
    }
  }

  /** Fetches a notification an event brought into the view without its fields. */
  async function fetchOne(id) {
    const g = gen;
    try {
      const [n, events] = await read(`/v1/me/notifications/${enc(id)}`, lastSeq);
      const m = g === gen && replay(n, events);
      if (m && !known.has(id)) {
        known.set(id, m);
        changed();
      }
    } catch (err) {
      if (err.status !== 404) report(err); // 404: gone meanwhile, and its event says so
    }
  }

  // --- the log
  /** Every event, from this client's connection or relayed by the tab that holds it. */
  function receive(ev) {
    if (!running || !ev) return;
    const at = ev.type === 'reset' ? ev.data?.last_seq : ev.seq;
    if (isInt(at) && (ev.type === 'reset' || at > cursor)) cursor = at;
    if (!ready) pending.push(ev);
    else apply(ev);
  }

  function apply(ev) {
    const { type } = ev;
    const d = ev.data && typeof ev.data == 'object' ? ev.data : {};
    if (type === 'reset') {
      setCounts(d.counts);
      emit('event', ev);
      reload().catch(report);
      return;
    }
    const seq = Number(ev.seq);
    if (!isInt(seq) || seq <= lastSeq) return; // applied already, or in the loaded page
    lastSeq = seq;
    if (reading) journal.push(ev);
    if (type === 'preferences') {
      preferenceEvents++;
      preferences = notificationOf(d);
    } else if (typeof d.id == 'string') {
      const n = known.get(d.id);
      if (n) {
        const m = applyTo(n, type, d);
        if (m) known.set(d.id, m);
        else known.delete(d.id);
      } else if (type === 'notification' || type === 'updated') {
        known.set(d.id, notificationOf(d));
      } else if (ENTERS[filter.view].includes(type)) {
        fetchOne(d.id);
      }
    } else if (isInt(d.up_to_seq)) {
      for (const [id, n] of known) {
        const m = applyTo(n, type, d);
        if (!m) known.delete(id);
        else if (m !== n) known.set(id, m);
      }
      // Which notifications just became archived only the server knows.
      if (type === 'archived_all' && filter.view === 'archived') reload().catch(report);
    }
    setCounts(d.counts);
    reconcile();
    changed();
    emit('event', ev);
  }

  function setCounts(c) {
    if (c && isInt(c.unread) && isInt(c.unseen)) counts = { unread: c.unread, unseen: c.unseen };
  }

  // --- optimistic changes
  /**
   * A change shows at once, as `patch` of the notification; the log has the
   * last word. It is dropped as soon as the applied log shows it (`settled`),
   * whoever's event did that, or when the request fails, which rolls it back.
   */
  async function change(target, patch, settled, method, path, body) {
    const o = { target, patch, settled };
    optimistic.push(o);
    reconcile();
    changed();
    try {
      await api(method, path, body);
    } catch (err) {
      o.failed = true;
      throw err;
    } finally {
      reconcile();
      changed();
    }
  }

  function reconcile() {
    optimistic = optimistic.filter(o => !o.failed && !(typeof o.target == 'string'
      ? o.settled(known.get(o.target))
      : [...known.values()].every(n => !o.target(n) || o.settled(n))));
  }

  const single = (id, patch, settled, path, body, method = 'POST') =>
    change(id, patch, settled, method, `/v1/me/notifications/${enc(id)}${path}`, body);

  /** A bulk change: up to what this client has applied (not what arrived at the server since, unseen by the reader). */
  function bulk(path, { category = null } = {}, patch, settled) {
    const upTo = lastSeq;
    const covers = n => n.seq <= upTo && (category == null || n.category === category);
    const body = { up_to_seq: upTo };
    if (category != null) body.category = category;
    return change(covers, patch, settled, 'POST', `/v1/me/notifications/${path}`, body);
  }

  // --- what subscribers read
  function visible() {
    if (!list) {
      const holds = VIEWS[filter.view][1];
      list = [];
      for (let n of known.values()) {
        for (const o of optimistic) {
          if (n && (o.target === n.id || (typeof o.target == 'function' && o.target(n)))) n = o.patch(n);
        }
        if (n && n.seq >= floor && holds(n) && (filter.category == null || n.category === filter.category)) list.push(n);
      }
      list.sort((a, b) => b.seq - a.seq);
    }
    return list;
  }

  function setState(s, t) {
    if (s === state && t === transport) return;
    state = s;
    transport = t;
    if (leader) post({ s, t });
    changed();
    emit('state', s);
  }

  // --- the live connection (held by one tab: the leader)
  let leader = false;
  let conn = null;       // the current connection
  let spare = null;      // its replacement while a new token connects
  let pick = 0;          // index in `order`
  let fails = 0;         // failures in a row of `order[pick]` before it ever opened
  let attempt = 0;       // reconnects in a row, for the backoff
  let worked = false;    // some transport has opened: stay with it
  let openedAt = 0;

  function connect() {
    if (!running || !leader || !ready || conn) return;
    conn = dial(order[pick], null);
  }

  /** Opens `kind`; with `old`, as a replacement that takes over once open. */
  function dial(kind, old) {
    const c = TRANSPORTS[kind](cursor, {
      open() {
        if (old) {
          spare = null;
          if (conn !== old) return c.close();
          conn = c;
          old.close();
          return;
        }
        if (conn !== c) return;
        worked = true;
        fails = 0;
        openedAt = now();
        setState('live', kind);
      },
      event(ev) {
        if (conn !== c && spare !== c) return;
        post({ e: ev });
        receive(ev);
      },
      close(why) {
        if (spare === c) spare = null;
        if (conn !== c) return; // replaced, or a replacement that failed: the old one carries on
        conn = null;
        lost(kind, why);
      },
    });
    c.kind = kind;
    if (old) spare = c;
    return c;
  }

  /** A new token: streams are authorized when they open, so a new one opens before the old one closes. */
  function swapConnection() {
    if (conn && !spare && state === 'live' && conn.kind !== 'poll') dial(conn.kind, conn);
  }

  /** `why`: 'auth' (token refused or expired), 'end' (closed by the server), 'fail' (could not connect or broke). */
  async function lost(kind, why) {
    const r = run;
    const wasOpen = openedAt > 0;
    // Reset the backoff only after a connection that lasted: one the
    // server opens and closes at once must not make a tight loop.
    if (wasOpen && now() - openedAt > 5000) attempt = 0;
    openedAt = 0;
    setState(worked ? 'reconnecting' : 'connecting', kind);
    if (why === 'auth' || (tokenExp && tokenExp <= now() + 1000)) {
      const old = token;
      await renewToken().catch(report);
      // The same token again, refused or ended: the application has to act
      // (sign in again); the client keeps trying, backing off.
      if (why === 'auth' && token === old) report(Object.assign(new Error('the server refuses the token'), { status: 401 }));
    } else if (!wasOpen && kind === 'ws') {
      // A refused WebSocket handshake looks like any failure; REST tells
      // (and asks getToken again on a 401).
      await api('GET', '/v1/me/counts').catch(err => { if (err.status === 401) report(err); });
    }
    if (r !== run || !leader) return;
    // A new token is tried at once, the first time.
    let wait = !(why === 'auth' && attempt === 0);
    if (!worked && !wasOpen && ++fails >= 2) {
      // Never opened: try the next transport at once (a proxy may buffer
      // streams or refuse upgrades); after the last, the first again, after
      // the backoff.
      pick = (pick + 1) % order.length;
      fails = 0;
      if (pick) wait = false;
    }
    if (wait) await sleep(backoff(attempt));
    attempt++;
    if (r === run && leader) connect();
  }

  const TRANSPORTS = {
    sse(from, h) {
      let done = false;
      let expired = false;
      let idle;
      let req;
      const end = why => {
        if (done) return;
        done = true;
        cancel(idle);
        req.abort();
        h.close(why);
      };
      const quiet = ms => { cancel(idle); idle = later(() => end('fail'), ms); };
      // A stream that does not open this fast counts as failed (a proxy may hold it).
      quiet(10000);
      req = io.stream(`${base}/v1/me/stream?last_event_id=${from}&format=message`,
        { Accept: 'text/event-stream', Authorization: `Bearer ${token}` });
      req.promise.then(async res => {
        if (done) return;
        if (res.status === 401) return end('auth');
        if (res.status !== 200 || !res.body) return end('fail');
        h.open();
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        let data = [];
        for (;;) {
          const { value, done: eof } = await reader.read();
          if (done) return;
          if (eof) return end(expired ? 'auth' : 'end');
          quiet(SILENCE_MS);
          buffer += decoder.decode(value, { stream: true });
          let i;
          while ((i = buffer.search(/\r\n|\r|\n/)) >= 0) {
            const line = buffer.slice(0, i);
            buffer = buffer.slice(i + (buffer.startsWith('\r\n', i) ? 2 : 1));
            if (!line) {
              // format=message: every event's data is {seq, type, data}.
              if (data.length) {
                try { h.event(JSON.parse(data.join('\n'))); } catch { /* not JSON: skip */ }
              }
              data = [];
            } else if (line[0] === ':') {
              // The server's last words before closing at the token's exp.
              if (line.includes('token expired')) expired = true;
            } else if (line.startsWith('data:')) {
              data.push(line.slice(line[5] === ' ' ? 6 : 5));
            }
          }
        }
      }).catch(() => end('fail'));
      return { close() { done = true; cancel(idle); req.abort(); } };
    },

    ws(from, h) {
      let done = false;
      let open = false;
      let pinger;
      let idle;
      let socket;
      const shut = () => {
        done = true;
        cancel(pinger);
        cancel(idle);
        if (socket) socket.close();
      };
      const end = why => { if (!done) { shut(); h.close(why); } };
      const quiet = ms => { cancel(idle); idle = later(() => end('fail'), ms); };
      // A socket that does not open this fast counts as failed.
      quiet(10000);
      try {
        socket = io.socket(`${base.replace(/^http/, 'ws')}/v1/me/ws?access_token=${enc(token)}&last_event_id=${from}`, {
          open() {
            if (done) return;
            open = true;
            quiet(SILENCE_MS + PING_MS);
            // The server answers a ping with a pong: silence then means a dead socket.
            pinger = every(() => { try { socket.send('{"op":"ping"}'); } catch { /* closing */ } }, PING_MS);
            h.open();
          },
          message(text) {
            if (done) return;
            quiet(SILENCE_MS + PING_MS);
            let m;
            try { m = JSON.parse(text); } catch { return; }
            // Events have a seq; pong, ack and error answers do not.
            if (m && m.seq != null && m.type) h.event(m);
          },
          // 4001: closed at the token's exp.
          close: code => end(code === 4001 ? 'auth' : open ? 'end' : 'fail'),
        });
      } catch {
        // E.g. a URL the platform refuses: a failure like any other, reported after this returns.
        later(() => end('fail'), 0);
      }
      return { close: shut };
    },

    poll(from, h) {
      let done = false;
      let req;
      let after = from;
      const end = why => { if (!done) { done = true; h.close(why); } };
      (async () => {
        // The first answers at once, so the client knows it is live; the
        // others wait on the server.
        for (let first = true; !done; first = false) {
          req = io.request('GET', `${base}/v1/me/events?after=${after}&wait=${first ? 0 : POLL_WAIT_S}`,
            headers(token), undefined, (POLL_WAIT_S + 15) * 1000, later, cancel);
          let res;
          try { res = await req.promise; } catch { return end('fail'); }
          if (done) return;
          if (res.status === 401) return end('auth');
          if (res.status !== 200 || !res.data || !Array.isArray(res.data.events)) return end('fail');
          if (first) h.open();
          for (const ev of res.data.events) {
            if (done) return;
            const at = ev.type === 'reset' ? ev.data?.last_seq : ev.seq;
            if (isInt(at)) after = at;
            h.event(ev);
          }
          // Nothing visible lies between `after` and the user's last seq (deleted notifications' seqs).
          if (!res.data.events.length && isInt(res.data.last_seq) && res.data.last_seq > after) after = res.data.last_seq;
        }
      })();
      return { close() { done = true; req && req.abort(); } };
    },
  };

  // --- one connection for all of a user's tabs
  /*
   * A browser opens at most six HTTP/1.1 connections per origin and each
   * stream holds one for good, so tabs elect a leader: with a Web Lock
   * (released by the browser itself when the tab closes or crashes), else
   * with a heartbeat on the channel. Only the leader connects; it relays
   * every event and its state on a BroadcastChannel. Every tab applies
   * events by seq itself, so a new leader resumes from its own last seq and
   * nothing falls between the two.
   */
  let channel = null;
  let unlock = null;
  let lockWait = null;
  let onElection = null;
  let beat = null;
  let beatId = null;
  const post = m => { try { channel && channel.postMessage(m); } catch { /* closed */ } };

  function lead() {
    if (!running || leader) return;
    leader = true;
    worked = false;
    pick = fails = attempt = 0;
    setState(state === 'live' ? 'reconnecting' : state, null);
    post({ s: state, t: transport });
    connect();
  }

  function resign() {
    if (!leader) return;
    leader = false;
    for (const c of [conn, spare]) c && c.close();
    conn = spare = null;
    post({ s: 'reconnecting', t: transport });
  }

  function elect() {
    const sub = claims(token).sub;
    const BC = globalThis.BroadcastChannel;
    if (!share || wx || !BC || typeof sub != 'string') return lead();
    const name = `herald:${base}:${sub}`;
    channel = new BC(name);
    channel.onmessage = ({ data: m }) => {
      if (!running || !m) return;
      if (m.e) { if (!leader) receive(m.e); }
      else if (m.s) { if (!leader) setState(m.s, m.t); }
      else if (m.hello) { if (leader) post({ s: state, t: transport }); }
      else if (onElection) onElection(m);
    };
    post({ hello: 1 });
    const locks = globalThis.navigator && globalThis.navigator.locks;
    if (locks && locks.request) {
      const r = run;
      lockWait = new AbortController();
      locks.request(name, { signal: lockWait.signal }, () => r === run && running
        ? new Promise(release => { unlock = release; lead(); })
        : undefined).catch(() => { /* aborted: stopped while waiting */ });
      return;
    }
    // Without Web Locks: the leader beats every 500 ms, 3 s of silence means
    // it is gone, and a leaving leader says so.
    const me = Math.random().toString(36).slice(2);
    let current = null;
    let deadline = now() + 1500; // time for a current leader to be heard
    onElection = m => {
      if (m.beat) {
        if (leader && m.beat < me) resign(); // two leaders: the smaller id stays
        if (!leader) { current = m.beat; deadline = now() + 3000; }
      } else if (m.bye && m.bye === current && !leader) {
        deadline = now() + Math.random() * 300; // soon, but not all tabs at once
      }
    };
    beatId = me;
    beat = every(() => {
      if (!leader && now() > deadline) lead();
      if (leader) post({ beat: me });
    }, 500);
  }

  function unelect() {
    if (beat && leader) post({ bye: beatId });
    resign();
    cancel(beat);
    beat = onElection = null;
    if (lockWait) lockWait.abort();
    if (unlock) unlock();
    lockWait = unlock = null;
    if (channel) channel.close();
    channel = null;
  }

  // Leaving the page hands the connection on at once; back from the
  // back/forward cache, the tab stands for election again.
  const onHide = () => { if (running) unelect(); };
  const onShow = e => { if (running && e.persisted) elect(); };

  // --- the client
  function stop() {
    if (!running) return;
    unelect();
    running = false;
    run++;
    for (const abort of [...aborts]) abort();
    aborts.clear();
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const wake of [...wakers]) wake();
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener('pagehide', onHide);
      globalThis.removeEventListener('pageshow', onShow);
    }
    ready = false;
    pending = [];
    optimistic = [];
    gen++;
    setState('closed', null);
  }

  const client = {
    get state() { return state; },
    get transport() { return transport; },
    get lastSeq() { return lastSeq; },
    get notifications() { return visible(); },
    get counts() { return counts; },
    get hasMore() { return nextBefore != null; },
    get ready() { return ready; },
    get preferences() { return preferences; },
    get filter() { return filter; },
    get leader() { return leader; },
    /** Everything above in one object that changes identity on every change (for React's useSyncExternalStore). */
    get snapshot() {
      return snap || (snap = Object.freeze({
        state, transport, lastSeq, notifications: visible(), counts,
        hasMore: nextBefore != null, ready, preferences, filter, leader,
      }));
    },

    /** Loads the first page, then goes live; resolves once the page is there (network trouble is retried, a refused token rejects). */
    start() {
      if (running) return started;
      running = true;
      const r = ++run;
      worked = false;
      pick = fails = attempt = 0;
      setState('connecting', null);
      return (started = (async () => {
        try {
          await renewToken();
          if (r !== run) return;
          if (globalThis.addEventListener) {
            globalThis.addEventListener('pagehide', onHide);
            globalThis.addEventListener('pageshow', onShow);
          }
          // Listen to the leader before loading: relayed events that race
          // the page wait in `pending`.
          elect();
          if (await reload()) connect();
        } catch (err) {
          if (r === run) stop();
          throw err;
        }
      })());
    },

    stop,

    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },

    on(type, fn) {
      listeners[type].add(fn);
      return () => listeners[type].delete(fn);
    },

    /** The next older page; false when there is none (or the list reloaded meanwhile). */
    loadMore() {
      if (!ready || nextBefore == null) return Promise.resolve(false);
      return more || (more = (async () => {
        const g = gen;
        try {
          const [page, events] = await read(listPath(nextBefore), lastSeq);
          if (g !== gen) return false;
          for (const n of page.items) {
            const m = replay(n, events);
            if (m) known.set(m.id, m);
          }
          nextBefore = page.next_before;
          floor = nextBefore ?? 0;
          reconcile();
          changed();
          return true;
        } finally {
          more = null;
        }
      })());
    },

    /** Shows another view or category: the first page of it is loaded afresh. */
    setFilter(f) {
      filter = { ...filter, ...f };
      if (!VIEWS[filter.view]) throw new TypeError(`unknown view ${filter.view}`);
      changed();
      return running ? reload().then(() => {}) : Promise.resolve();
    },

    /** Turns a category on or off for this user; `preferences` follows with its event. */
    setPreference: (category, enabled) =>
      api('PUT', `/v1/me/preferences/categories/${enc(category)}`, { enabled: !!enabled }).then(() => {}),

    markRead: id => single(id, n => ({ ...n, read_at: n.read_at || iso(), seen_at: n.seen_at || iso() }), n => !n || n.read_at, '/read'),
    markUnread: id => single(id, n => ({ ...n, read_at: null }), n => !n || !n.read_at, '/unread'),
    markSeen: id => single(id, n => ({ ...n, seen_at: n.seen_at || iso() }), n => !n || n.seen_at, '/seen'),
    archive: id => single(id, n => ({ ...n, archived_at: iso() }), n => !n || n.archived_at, '/archive'),
    unarchive: id => single(id, n => ({ ...n, archived_at: null }), n => !n || !n.archived_at, '/unarchive'),
    snooze: (id, until) => {
      const at = new Date(until).toISOString();
      return single(id, n => ({ ...n, snoozed_until: at }), n => !n || n.snoozed_until, '/snooze', { until: at });
    },
    unsnooze: id => single(id, n => ({ ...n, snoozed_until: null }), n => !n || !n.snoozed_until, '/unsnooze'),
    act: (id, actionId) => single(id,
      n => ({ ...n, action_taken: { id: actionId, at: iso() }, read_at: n.read_at || iso(), seen_at: n.seen_at || iso() }),
      n => !n || n.action_taken, `/actions/${enc(actionId)}`),
    remove: id => single(id, () => null, n => !n, '', undefined, 'DELETE'),
    markAllRead: opts => bulk('read-all', opts, n => ({ ...n, read_at: n.read_at || iso(), seen_at: n.seen_at || iso() }), n => n.read_at),
    markAllSeen: opts => bulk('seen-all', opts, n => ({ ...n, seen_at: n.seen_at || iso() }), n => n.seen_at),
    archiveAll: opts => bulk('archive-all', opts, n => ({ ...n, archived_at: n.archived_at || iso() }), n => n.archived_at),
  };
  return client;
}
