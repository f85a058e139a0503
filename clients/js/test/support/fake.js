// A scripted stand-in for Herald, for the unit tests of the store: a fetch
// that answers list pages and records every request, and a WebSocket class
// whose sockets the test feeds frames to and closes.

/** A token of the shape the client reads (claims only; nothing checks the signature here). */
export function token(sub, ttlSeconds = 3600, extra = {}) {
  const b64 = v => Buffer.from(JSON.stringify(v)).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp, ...extra })}.sig`;
}

export function notification(seq, fields = {}) {
  return {
    id: `n${seq}`, seq, title: `title ${seq}`, body: null, category: null, data: null,
    created_at: '2026-01-01T00:00:00Z', read_at: null, expires_at: null, seen_at: null,
    archived_at: null, snoozed_until: null, actions: [], action_taken: null, key: null,
    updated_at: null, topic: null, ...fields,
  };
}

export function page(items, fields = {}) {
  return {
    items, next_before: null, last_seq: Math.max(0, ...items.map(n => n.seq)),
    unread_count: items.filter(n => !n.read_at).length,
    unseen_count: items.filter(n => !n.seen_at).length, ...fields,
  };
}

const tick = () => new Promise(resolve => setImmediate(resolve));

/** Lets every pending promise callback and immediate run. */
export async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i++) await tick();
}

export async function until(check, what = 'condition', ms = 3000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

export function fakeHerald() {
  const server = {
    /** Answers for GET /v1/me/notifications, in order; the last one repeats. */
    pages: [page([])],
    /** `(method, path, body) => {status, body}` for everything else; 200 {} by default. */
    answer: () => ({ status: 200, body: {} }),
    /** Every request: {method, path, url, body, auth}. */
    requests: [],
    /** Requests not answered yet: hold(path prefix) keeps matching ones until released. */
    held: [],
    holds: [],
    sockets: [],
    autoOpen: true,
    refuse: new Set(), // tokens answered with 401
    log: [],           // events long-polls answer with
    polls: [],
  };

  /** Appends events to the log and answers the waiting long-polls. */
  server.push = (...events) => {
    server.log.push(...events);
    for (const answer of server.polls.splice(0)) answer();
  };

  server.hold = prefix => server.holds.push(prefix);
  server.release = () => {
    server.holds = [];
    for (const go of server.held.splice(0)) go();
  };

  server.fetch = (url, init = {}) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const path = u.pathname + u.search;
    const auth = (init.headers?.Authorization || '').replace('Bearer ', '');
    const req = { method: init.method || 'GET', path, url, body: init.body ? JSON.parse(init.body) : undefined, auth };
    server.requests.push(req);
    const respond = () => {
      if (init.signal?.aborted) return reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      let status = 200;
      let body;
      if (server.refuse.has(auth)) {
        status = 401;
        body = { status: 401, title: 'Unauthorized' };
      } else if (req.method === 'GET' && u.pathname === '/v1/me/events') {
        // Long-polls wait for push() (or their abort); a first poll (wait=0) answers at once.
        const after = Number(u.searchParams.get('after'));
        const answer = () => {
          const events = server.log.filter(e => e.seq > after);
          resolve(new Response(JSON.stringify({ events, last_seq: Math.max(after, ...server.log.map(e => e.seq)) }),
            { status: 200, headers: { 'content-type': 'application/json' } }));
        };
        if (u.searchParams.get('wait') === '0' || server.log.some(e => e.seq > after)) answer();
        else server.polls.push(answer);
        return;
      } else if (req.method === 'GET' && u.pathname === '/v1/me/notifications') {
        const next = server.pages.length > 1 ? server.pages.shift() : server.pages[0];
        body = typeof next === 'function' ? next(req) : next;
      } else {
        ({ status, body } = server.answer(req.method, u.pathname, req.body));
      }
      resolve(new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } }));
    };
    init.signal?.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
    if (server.holds.some(prefix => path.startsWith(prefix))) server.held.push(respond);
    else setImmediate(respond);
  });

  server.WebSocket = class FakeSocket {
    constructor(url) {
      this.url = new URL(url);
      this.sent = [];
      this.closed = false;
      this.open = false;
      server.sockets.push(this);
      if (server.autoOpen) setImmediate(() => this.accept());
    }
    get from() { return Number(this.url.searchParams.get('last_event_id')); }
    get token() { return this.url.searchParams.get('access_token'); }
    accept() {
      if (this.closed || this.open) return;
      this.open = true;
      this.onopen?.({});
    }
    send(text) { this.sent.push(text); }
    close() { this.closed = true; }
    /** Delivers a frame (or several) as the server would. */
    deliver(...frames) {
      for (const f of frames) this.onmessage?.({ data: JSON.stringify(f) });
    }
    /** The server closes the socket. */
    drop(code = 1000) {
      if (this.closed) return;
      this.closed = true;
      this.onclose?.({ code });
    }
  };

  /** The socket the client holds now. */
  server.socket = () => server.sockets.filter(s => !s.closed).at(-1);
  return server;
}

/** `{seq, type, data}` with counts, as the server sends it. */
export const ev = (seq, type, data = {}, counts = undefined) =>
  ({ seq, type, data: counts ? { ...data, counts } : data });
