// Talking to the live Herald these tests run against (started by Herald's
// test suite, tests/api/client_js/node.rs): its URL and the HS256 secret it
// verifies tokens with come from the environment.
import { createHmac, randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { afterEach } from 'node:test';

export const HERALD = process.env.HERALD_URL;
const SECRET = process.env.HERALD_TEST_SECRET;
if (!HERALD || !SECRET) {
  throw new Error('HERALD_URL and HERALD_TEST_SECRET name the Herald to test against (cargo test --test api client_js sets them)');
}

const b64 = value => Buffer.from(JSON.stringify(value)).toString('base64url');

/** An HS256 JWT for `sub`, valid for `ttl` seconds. */
export function mint(sub, { ttl = 3600, scope, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, iat: now, exp: now + ttl, ...(scope ? { scope } : {}) })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** Clients to stop after each test, passed or failed (one left running would keep the process alive). */
const kept = [];
afterEach(() => { for (const c of kept.splice(0)) c.stop(); });
export const keep = client => { kept.push(client); return client; };

/** A user of its own for each test. */
export const user = name => `${name}-${randomUUID().slice(0, 8)}`;

export async function call(token, method, path, body) {
  const res = await fetch(HERALD + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const publisher = mint('node-tests-publisher', { scope: 'publish' });
const admin = mint('node-tests-admin', { scope: 'admin' });

/** Publishes to `to`; the answer's one item. */
export async function publish(to, fields = {}) {
  const r = await call(publisher, 'POST', '/v1/notifications', { recipients: [to], title: 'hello', ...fields });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.notifications[0];
}

export async function as(sub, method, path, body) {
  const r = await call(mint(sub), method, path, body);
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The server's side: the whole inbox list (up to 100), counts and last_seq. */
export async function serverState(sub) {
  const list = await as(sub, 'GET', '/v1/me/notifications?status=all&limit=100');
  const counts = await as(sub, 'GET', '/v1/me/counts');
  return { list: list.items, lastSeq: list.last_seq, counts: { unread: counts.unread, unseen: counts.unseen } };
}

/** Closes every live connection of `sub` (the admin API). */
export async function disconnect(sub) {
  const r = await call(admin, 'POST', `/v1/admin/users/${encodeURIComponent(sub)}/disconnect`);
  assert.equal(r.status, 204);
}

/**
 * A fetch that keeps every request it made, to check after stop() that
 * none is left: each one has finished or was aborted.
 */
export function recordingFetch() {
  const requests = [];
  const f = (url, init = {}) => {
    const entry = { url: String(url), done: false, aborted: () => !!init.signal?.aborted };
    requests.push(entry);
    const p = fetch(url, init);
    p.then(res => {
      // A stream is finished when its body is (or when it is aborted).
      if (!String(url).includes('/v1/me/stream')) entry.done = true;
      return res;
    }, () => { entry.done = true; });
    return p;
  };
  f.requests = requests;
  f.open = () => requests.filter(r => !r.done && !r.aborted());
  return f;
}

/** After `client.stop()`: no request of its own still open, none started since, and (for streams and sockets) none left on the server. */
export async function leavesNothing(client, fetchFn, transport) {
  const made = fetchFn.requests.length;
  client.stop();
  assert.equal(client.state, 'closed');
  assert.deepEqual(fetchFn.open().map(r => r.url), [], 'every request finished or aborted');
  // A waiting long-poll stays on the server until its wait ends, client or
  // not; a stream or socket goes as soon as the server next writes to it.
  if (transport !== 'poll') {
    await until(async () => (await connections())[transport] === 0, `the ${transport} connection gone from the server`);
  }
  await new Promise(resolve => setTimeout(resolve, 500));
  assert.equal(fetchFn.requests.length, made, 'nothing new after stop()');
}

/** This instance's live connections per transport. */
export async function connections() {
  return (await call(admin, 'GET', '/v1/admin/stats')).body.connections;
}

export async function until(check, what = 'condition', ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise(resolve => setTimeout(resolve, 20));
  }
}

/** Waits until the client has applied the whole log, then checks it shows what the server has. */
export async function matchesServer(client, sub) {
  const server = await until(async () => {
    const s = await serverState(sub);
    return client.lastSeq === s.lastSeq && client.state === 'live' ? s : null;
  }, `client caught up (client at ${client.lastSeq})`);
  const shown = client.notifications.map(n => ({ id: n.id, read_at: n.read_at, seen_at: n.seen_at, title: n.title }));
  const truth = server.list.map(n => ({ id: n.id, read_at: n.read_at, seen_at: n.seen_at, title: n.title }));
  assert.deepEqual(shown, truth);
  assert.deepEqual(client.counts, server.counts);
}
