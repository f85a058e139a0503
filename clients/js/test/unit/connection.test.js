// The connection against a scripted server: backoff, fallback between
// transports, token renewal, one connection for several tabs, and stop().
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../../herald.js';
import { fakeHerald, notification as n, page, ev, token, settle, until } from '../support/fake.js';

// Every client a test made stops after it, even when an assertion failed
// (a client left running would keep the test process alive).
const made = [];
afterEach(() => { for (const c of made.splice(0)) c.stop(); });

function client(server, options = {}) {
  const tok = token('alice');
  const c = createClient({
    url: 'http://herald.test',
    getToken: async () => tok,
    fetch: server.fetch,
    WebSocket: server.WebSocket,
    transports: ['ws'],
    share: false,
    ...options,
  });
  made.push(c);
  return c;
}

/**
 * Runs `body` with setTimeout recording each delay the client asks for and
 * waiting only `scale` of it, so a run of backoffs takes milliseconds.
 */
async function withFastTimers(scale, body) {
  const real = globalThis.setTimeout;
  const delays = [];
  globalThis.setTimeout = (fn, ms = 0, ...args) => {
    delays.push(ms);
    return real(fn, ms * scale, ...args);
  };
  try {
    return await body(delays);
  } finally {
    globalThis.setTimeout = real;
  }
}

test('reconnects with exponential backoff and jitter, and resets it after a lasting connection', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)])];
  const c = client(server);
  await c.start();
  await until(() => c.state === 'live');
  server.autoOpen = false; // the server is gone: every attempt fails
  const states = [];
  c.on('state', s => states.push(s));
  await withFastTimers(1 / 1000, async delays => {
    const before = delays.length;
    server.socket().drop(1001);
    for (let i = 0; i < 8; i++) {
      await until(() => server.sockets.filter(s => !s.closed).length === 1, 'a new attempt');
      server.socket().drop(1006);
    }
    // The reconnect waits, without the fixed timeouts (requests, opening, silence).
    const waits = delays.slice(before).filter(ms => ms >= 250 && ![10000, 30000, 40000, 70000].includes(ms));
    assert.ok(waits.length >= 7, `waits: ${waits}`);
    for (let i = 0; i < 7; i++) {
      const cap = Math.min(30000, 500 * 2 ** i);
      assert.ok(waits[i] >= cap / 2 && waits[i] <= cap, `wait ${i} = ${waits[i]}, expected within [${cap / 2}, ${cap}]`);
    }
    const ratios = waits.slice(0, 6).map((w, i) => w / Math.min(30000, 500 * 2 ** i));
    assert.ok(new Set(ratios.map(r => r.toFixed(3))).size > 1, 'jitter: not every client waits the same');
    server.autoOpen = true;
    await until(() => server.socket(), 'one more attempt');
    server.socket().accept();
    await until(() => c.state === 'live', 'back');
  });
  assert.equal(states[0], 'reconnecting');
  assert.ok(!states.includes('connecting'), 'a client that was live is reconnecting, not connecting');
  c.stop();
});

test('falls back to the next transport when one never opens, and stays with one that worked', async () => {
  const server = fakeHerald();
  server.pages = [page([])];
  server.autoOpen = false;
  // No streaming fetch for SSE here: a fetch whose stream never answers.
  const stalled = (url, init) => url.includes('/v1/me/stream')
    ? Promise.reject(new TypeError('failed'))
    : server.fetch(url, init);
  const c = client(server, { fetch: stalled, transports: ['sse', 'ws', 'poll'] });
  await withFastTimers(1 / 1000, async () => {
    await c.start();
    // SSE fails twice, then ws twice (sockets never open), then poll works.
    for (let i = 0; i < 2; i++) {
      await until(() => server.socket(), 'a socket');
      server.socket().drop(1006);
    }
    await until(() => c.state === 'live', 'live by long-polling');
  });
  assert.equal(c.transport, 'poll');
  const streams = server.requests.filter(r => r.path.startsWith('/v1/me/stream')).length;
  assert.equal(streams, 0, 'the stream requests failed before reaching the server');
  assert.equal(server.sockets.length, 2);
  c.stop();
});

test('getToken is asked again before exp, and the new token connects before the old connection closes', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)])];
  const tokens = [token('alice', 2), token('alice', 3600)];
  let asked = 0;
  const c = client(server, { getToken: async () => tokens[Math.min(asked++, 1)] });
  await c.start();
  await until(() => c.state === 'live');
  const first = server.socket();
  assert.equal(first.token, tokens[0]);
  const states = [];
  c.on('state', s => states.push(s));
  server.autoOpen = false;
  await until(() => asked === 2, 'asked before exp', 2500);
  await until(() => server.sockets.length === 2, 'a second socket');
  const second = server.sockets[1];
  assert.equal(second.token, tokens[1]);
  await settle();
  assert.equal(first.closed, false, 'the old one stays until the new one is open');
  second.accept();
  assert.equal(first.closed, true, 'and closes once it is');
  first.deliver(ev(2, 'notification', n(2)));
  second.deliver(ev(2, 'notification', n(2)), ev(3, 'notification', n(3)));
  assert.equal(c.lastSeq, 3);
  assert.deepEqual(states, [], 'live throughout');
  c.stop();
});

test('a refused token asks getToken again, for REST and for the stream', async () => {
  const server = fakeHerald();
  const bad = token('alice', 3600, { v: 1 });
  const good = token('alice', 3600, { v: 2 });
  server.refuse.add(bad);
  server.pages = [page([n(1)])];
  const given = [bad, good];
  let asked = 0;
  const c = client(server, { getToken: async () => given[Math.min(asked++, given.length - 1)] });
  await c.start();
  assert.equal(asked, 2);
  assert.deepEqual(server.requests.filter(r => r.path.startsWith('/v1/me/notifications?')).map(r => r.auth), [bad, good]);
  await until(() => c.state === 'live');
  assert.equal(server.socket().token, good);

  // The server ends the socket at the token's exp (close code 4001): a new
  // token at once, and a new socket from where the old one stopped.
  given.push(token('alice', 3600, { v: 3 }));
  server.socket().deliver(ev(2, 'notification', n(2)));
  server.socket().drop(4001);
  await until(() => server.socket()?.token === given[2], 'reconnected with the third token');
  assert.equal(server.socket().from, 2);
  c.stop();
});

test('a token the server keeps refusing is reported as an error with status 401', async () => {
  const server = fakeHerald();
  server.pages = [page([])];
  const tok = token('alice');
  const c = client(server, { getToken: async () => tok });
  await c.start();
  await until(() => c.state === 'live');
  const errors = [];
  c.on('error', e => errors.push(e.status));
  server.socket().drop(4001); // ended at exp, and getToken has nothing newer
  await until(() => errors.includes(401), 'reported');
  c.stop();
});

test('start() rejects when getToken fails or its token is refused, and the client stops', async () => {
  const server = fakeHerald();
  const c = client(server, { getToken: async () => { throw new Error('signed out'); } });
  await assert.rejects(c.start(), /signed out/);
  assert.equal(c.state, 'closed');
  const bad = token('alice');
  server.refuse.add(bad);
  const d = client(server, { getToken: async () => bad });
  await assert.rejects(d.start(), e => e.status === 401);
  assert.equal(d.state, 'closed');
});

/** navigator.locks as a browser has it, shared by the clients of this process (one origin). */
function fakeLocks() {
  const held = new Map();
  return {
    request(name, { signal }, callback) {
      return new Promise((resolve, reject) => {
        const entry = { go: null };
        const queue = held.get(name) || [];
        held.set(name, queue);
        const grant = async () => {
          try { resolve(await callback({ name })); } catch (e) { reject(e); }
          queue.shift();
          queue[0]?.go();
        };
        entry.go = grant;
        signal?.addEventListener('abort', () => {
          const i = queue.indexOf(entry);
          if (i > 0) { queue.splice(i, 1); reject(new Error('AbortError')); }
        });
        queue.push(entry);
        if (queue.length === 1) grant();
      });
    },
  };
}

for (const election of ['a Web Lock', 'a heartbeat']) {
  test(`tabs share one connection, elected with ${election}; the next tab takes over with no gap`, async () => {
    const server = fakeHerald();
    server.pages = [page([n(1)])];
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    if (election === 'a Web Lock') {
      Object.defineProperty(globalThis, 'navigator', { value: { locks: fakeLocks() }, configurable: true });
    }
    try {
      const tabs = [client(server, { share: true }), client(server, { share: true })];
      for (const tab of tabs) await tab.start();
      await until(() => tabs.every(t => t.state === 'live'), 'both live', 5000);
      await settle(20);
      assert.equal(server.sockets.filter(s => !s.closed).length, 1, 'one connection');
      const [leader, follower] = tabs[0].leader ? tabs : [tabs[1], tabs[0]];
      assert.equal(follower.leader, false);
      assert.equal(follower.transport, 'ws', "the follower shows the leader's transport");
      server.socket().deliver(ev(2, 'notification', n(2)));
      await until(() => follower.lastSeq === 2, 'relayed');
      assert.deepEqual(follower.notifications.map(x => x.id), ['n2', 'n1']);

      // The leader's tab closes; a notification is committed before the
      // follower connects. It resumes from its own last seq.
      const old = server.socket();
      leader.stop();
      assert.equal(old.closed, true);
      await until(() => follower.leader && server.socket(), 'the follower took over', 5000);
      assert.equal(server.socket().from, 2);
      server.socket().deliver(ev(3, 'notification', n(3)));
      assert.equal(follower.lastSeq, 3);
      assert.equal(server.sockets.filter(s => !s.closed).length, 1);
      follower.stop();
    } finally {
      if (saved) Object.defineProperty(globalThis, 'navigator', saved);
      else delete globalThis.navigator;
    }
  });
}

test('stop() leaves no timer, socket, request or listener behind', async () => {
  const real = { setTimeout, clearTimeout, setInterval, clearInterval };
  const live = new Set();
  globalThis.setTimeout = (fn, ms, ...a) => {
    const t = real.setTimeout(() => { live.delete(t); fn(...a); }, ms);
    live.add(t);
    return t;
  };
  globalThis.setInterval = (fn, ms, ...a) => { const t = real.setInterval(fn, ms, ...a); live.add(t); return t; };
  globalThis.clearTimeout = globalThis.clearInterval = t => { live.delete(t); real.clearTimeout(t); };
  const listeners = new Map();
  globalThis.addEventListener = (type, fn) => listeners.set(fn, type);
  globalThis.removeEventListener = (type, fn) => listeners.delete(fn);
  const channels = [];
  const RealChannel = globalThis.BroadcastChannel;
  globalThis.BroadcastChannel = class extends RealChannel {
    constructor(name) { super(name); channels.push(this); this.open = true; }
    close() { this.open = false; super.close(); }
  };
  try {
    for (const transports of [['ws'], ['poll']]) {
      const server = fakeHerald();
      server.pages = [page([n(1)])];
      const c = client(server, { transports, share: true });
      await c.start();
      await until(() => c.state === 'live', 'live', 5000);
      await settle();
      assert.ok(live.size > 0, 'it had timers (heartbeat, ping, token renewal)');
      assert.ok(listeners.size > 0, 'and page listeners');
      server.hold('/v1/me/events');
      server.hold('/v1/me/notifications/n1');
      const pending = c.markRead('n1');
      c.stop();
      await assert.rejects(pending, /abort/i, 'a request in flight is aborted');
      assert.equal(live.size, 0, `timers left: ${live.size}`);
      assert.equal(listeners.size, 0);
      assert.ok(channels.every(ch => !ch.open), 'channel closed');
      assert.ok(server.sockets.every(s => s.closed), 'socket closed');
      assert.equal(c.state, 'closed');
      server.release();
      await settle();
      assert.equal(live.size, 0, 'nothing starts again after stop');
    }
  } finally {
    Object.assign(globalThis, real);
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
    globalThis.BroadcastChannel = RealChannel;
  }
});
