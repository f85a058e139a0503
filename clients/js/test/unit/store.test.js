// The store against a scripted server: ordering, duplicates, reset, counts,
// every event type, optimistic changes and paging.
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
    url: 'http://herald.test/',
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

async function live(server, options) {
  const c = client(server, options);
  await c.start();
  await until(() => c.state === 'live', 'live');
  return c;
}

const ids = c => c.notifications.map(x => x.id);

test('applies each event once, in seq order; duplicates and stale events are ignored', async () => {
  const server = fakeHerald();
  server.pages = [page([n(2), n(1)])];
  const c = await live(server);
  assert.equal(server.socket().from, 2, 'the stream resumes from the page last_seq');
  const seen = [];
  c.on('event', e => seen.push(e.seq));
  const s = server.socket();
  s.deliver(ev(2, 'read', { id: 'n2', read_at: 'x' })); // in the page already
  s.deliver(ev(3, 'notification', n(3)), ev(4, 'notification', n(4)));
  s.deliver(ev(3, 'notification', n(3)), ev(4, 'read', { id: 'n4', read_at: 't' })); // replayed
  s.deliver(ev(1, 'deleted', { id: 'n1' }));
  assert.deepEqual(seen, [3, 4]);
  assert.deepEqual(ids(c), ['n4', 'n3', 'n2', 'n1']);
  assert.equal(c.notifications[0].read_at, null, 'a duplicate seq is not applied again');
  assert.equal(c.lastSeq, 4);
  c.stop();
});

test('a reset reloads the first page and continues from its last_seq', async () => {
  const server = fakeHerald();
  server.pages = [page([n(5)]), page([n(9), n(8)], { last_seq: 12, unread_count: 7, unseen_count: 9 })];
  const c = await live(server);
  const s = server.socket();
  const types = [];
  c.on('event', e => types.push(e.type));
  s.deliver(ev(10, 'reset', { last_seq: 10 }, { unread: 3, unseen: 3 }));
  // Events the stream sends after the reset, before and after the new page's last_seq.
  s.deliver(ev(11, 'notification', n(11)), ev(12, 'read', { id: 'n9', read_at: 't' }), ev(13, 'notification', n(13)));
  await until(() => c.lastSeq === 13, 'continued after the reloaded page');
  assert.deepEqual(ids(c), ['n13', 'n9', 'n8'], 'the page replaced the list; events up to its last_seq were in it');
  assert.equal(c.notifications[1].read_at, null, 'seq 12 was in the page, not applied on top');
  assert.deepEqual(types, ['reset', 'notification']);
  assert.deepEqual(c.counts, { unread: 7, unseen: 9 }, "the page's counts (seq 13 had none)");
  // A new connection resumes after the reset point, not the old lastSeq.
  s.drop();
  await until(() => server.socket() && server.socket() !== s, 'reconnected');
  assert.equal(server.socket().from, 13);
  c.stop();
});

test('a reset while the page loads is covered by that page', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)]), page([n(2), n(1)], { last_seq: 2 })];
  const c = await live(server);
  server.hold('/v1/me/notifications');
  server.socket().deliver(ev(2, 'reset', { last_seq: 2 }));
  await settle();
  server.socket().deliver(ev(2, 'reset', { last_seq: 2 }));
  server.release();
  await until(() => ids(c).length === 2);
  await settle();
  const lists = server.requests.filter(r => r.path.startsWith('/v1/me/notifications?'));
  assert.equal(lists.length, 2, 'one reload for both resets');
  c.stop();
});

test('counts come only from the events and the page', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1), n(2)], { unread_count: 40, unseen_count: 41 })];
  const c = await live(server);
  assert.deepEqual(c.counts, { unread: 40, unseen: 41 }, 'the page covers notifications not loaded');
  server.socket().deliver(ev(3, 'notification', n(3), { unread: 41, unseen: 42 }));
  assert.deepEqual(c.counts, { unread: 41, unseen: 42 });
  server.socket().deliver(ev(4, 'read', { id: 'n999', read_at: 't' }, { unread: 40, unseen: 42 }));
  assert.deepEqual(c.counts, { unread: 40, unseen: 42 }, 'also for notifications the client does not have');
  server.socket().deliver(ev(4, 'read', { id: 'n3', read_at: 't' }, { unread: 1, unseen: 1 }));
  assert.deepEqual(c.counts, { unread: 40, unseen: 42 }, 'a duplicate does not move them');
  server.hold('/v1/me/notifications/n3');
  const reading = c.markRead('n3');
  await settle();
  assert.ok(c.notifications.find(x => x.id === 'n3').read_at, 'shown read at once');
  assert.deepEqual(c.counts, { unread: 40, unseen: 42 }, 'an optimistic change leaves the counts to the log');
  server.release();
  await reading;
  c.stop();
});

test('every event type of the log', async () => {
  const server = fakeHerald();
  server.pages = [page([
    n(6, { category: 'ci', actions: [{ id: 'ok', label: 'OK', url: null }] }),
    n(5, { category: 'ci' }), n(4, { category: 'billing' }), n(3), n(2), n(1),
  ])];
  let fetchedOne = 0;
  server.answer = (method, path) => {
    if (method === 'GET' && path === '/v1/me/notifications/n0') {
      fetchedOne++;
      return { status: 200, body: n(0, { title: 'from the archive' }) };
    }
    return { status: 200, body: {} };
  };
  const c = await live(server);
  const s = server.socket();
  const byId = id => c.notifications.find(x => x.id === id);
  const counts = (unread, unseen) => ({ unread, unseen });

  s.deliver(ev(7, 'read', { id: 'n1', read_at: 'r1' }, counts(5, 5)));
  assert.equal(byId('n1').read_at, 'r1');
  assert.equal(byId('n1').seen_at, 'r1', 'reading implies seeing');
  s.deliver(ev(8, 'unread', { id: 'n1', read_at: null }, counts(6, 5)));
  assert.equal(byId('n1').read_at, null);
  assert.equal(byId('n1').seen_at, 'r1');
  s.deliver(ev(9, 'seen', { id: 'n2', seen_at: 's2' }));
  assert.equal(byId('n2').seen_at, 's2');
  s.deliver(ev(10, 'archived', { id: 'n2', archived_at: 'a2' }));
  assert.equal(byId('n2'), undefined, 'archived leaves the inbox');
  s.deliver(ev(11, 'unarchived', { id: 'n2' }));
  assert.equal(byId('n2').seen_at, 's2', 'and comes back as it was');
  s.deliver(ev(12, 'snoozed', { id: 'n3', until: '2030-01-01T00:00:00Z' }));
  assert.equal(byId('n3'), undefined, 'snoozed leaves the inbox');
  s.deliver(ev(13, 'unsnoozed', { id: 'n3' }));
  assert.ok(byId('n3'));
  s.deliver(ev(14, 'action', { id: 'n6', action_id: 'ok', at: 't14', read_at: 't14' }));
  assert.deepEqual(byId('n6').action_taken, { id: 'ok', at: 't14' });
  assert.equal(byId('n6').read_at, 't14');
  s.deliver(ev(15, 'updated', { ...n(5, { category: 'ci', title: 'changed', read_at: 'r5' }), counts: counts(1, 1) }));
  assert.equal(byId('n5').title, 'changed');
  assert.equal(byId('n5').counts, undefined, 'counts are not a field of the notification');
  assert.deepEqual(ids(c), ['n6', 'n5', 'n4', 'n3', 'n2', 'n1'], 'an update keeps its place');
  s.deliver(ev(16, 'notification', n(16, { category: 'ci' })));
  s.deliver(ev(17, 'read_all', { up_to_seq: 16, category: 'ci', read_at: 'r17' }));
  assert.deepEqual(c.notifications.filter(x => !x.read_at).map(x => x.id), ['n4', 'n3', 'n2', 'n1'], 'only category ci');
  s.deliver(ev(18, 'seen_all', { up_to_seq: 3, category: null, seen_at: 's18' }));
  assert.deepEqual(c.notifications.filter(x => !x.seen_at).map(x => x.id), ['n4']);
  s.deliver(ev(19, 'archived_all', { up_to_seq: 4, category: 'billing', archived_at: 'a19' }));
  assert.equal(byId('n4'), undefined);
  s.deliver(ev(20, 'deleted', { id: 'n1' }));
  s.deliver(ev(21, 'expired', { id: 'n16' }));
  assert.deepEqual(ids(c), ['n6', 'n5', 'n3', 'n2']);
  s.deliver(ev(22, 'deleted_all', { up_to_seq: 5, category: 'ci' }));
  assert.deepEqual(ids(c), ['n6', 'n3', 'n2']);
  s.deliver(ev(23, 'deleted_all', { up_to_seq: 3, category: null }));
  assert.deepEqual(ids(c), ['n6']);
  s.deliver(ev(24, 'preferences', { categories: { ci: { enabled: false } }, counts: counts(0, 0) }));
  assert.deepEqual(c.preferences, { categories: { ci: { enabled: false } } });
  assert.deepEqual(c.counts, counts(0, 0));
  s.deliver(ev(25, 'some_future_type', { x: 1 }));
  assert.equal(c.lastSeq, 25, 'an unknown type still moves the log on');

  // Unarchived, never seen by this client: only the server has its fields.
  s.deliver(ev(26, 'unarchived', { id: 'n0' }));
  await until(() => byId('n0'), 'fetched');
  assert.equal(fetchedOne, 1);
  assert.equal(byId('n0').title, 'from the archive');
  c.stop();
});

test('a notification fetched while events arrive gets those events', async () => {
  const server = fakeHerald();
  server.pages = [page([n(3)])];
  server.answer = () => ({ status: 200, body: n(1) }); // read before seq 5 and 6 committed
  const c = await live(server);
  server.hold('/v1/me/notifications/n1');
  server.socket().deliver(ev(4, 'unsnoozed', { id: 'n1' }));
  server.socket().deliver(ev(5, 'read', { id: 'n1', read_at: 'r5' }), ev(6, 'notification', n(6)));
  server.release();
  await until(() => c.notifications.length === 3);
  assert.deepEqual(ids(c), ['n6', 'n3', 'n1']);
  assert.equal(c.notifications[2].read_at, 'r5');
  c.stop();
});

test('optimistic changes show at once and the log reconciles them', async () => {
  const server = fakeHerald();
  server.pages = [page([n(3), n(2), n(1)])];
  const failing = new Set();
  server.answer = (method, path) => failing.has(path)
    ? { status: 409, body: { status: 409, title: 'Conflict', detail: 'an action was taken already' } }
    : { status: 200, body: {} };
  const c = await live(server);
  const s = server.socket();
  const byId = id => c.notifications.find(x => x.id === id);
  let renders = 0;
  c.subscribe(() => renders++);

  // Shown at once; the event confirms it; nothing flickers back.
  await c.markRead('n3');
  assert.ok(byId('n3').read_at, 'still read after the answer, before the event');
  s.deliver(ev(4, 'read', { id: 'n3', read_at: 'server-time' }));
  assert.equal(byId('n3').read_at, 'server-time', "the log's timestamp wins");

  // A request that fails is rolled back, and rejects.
  failing.add('/v1/me/notifications/n2/actions/ok');
  await assert.rejects(c.act('n2', 'ok'), e => e.status === 409 && /taken already/.test(e.message));
  assert.equal(byId('n2').action_taken, null);
  assert.equal(byId('n2').read_at, null);

  // Another device's later change wins over ours.
  await c.archive('n1');
  assert.equal(byId('n1'), undefined, 'hidden at once');
  s.deliver(ev(5, 'archived', { id: 'n1', archived_at: 'a' }));
  s.deliver(ev(6, 'unarchived', { id: 'n1' }));
  assert.ok(byId('n1'), 'the log unarchived it after our archive');

  // Removing, snoozing, marking all read.
  await c.remove('n2');
  assert.equal(byId('n2'), undefined);
  s.deliver(ev(7, 'deleted', { id: 'n2' }));
  await c.snooze('n1', new Date(Date.now() + 60000));
  assert.equal(byId('n1'), undefined);
  const snoozeBody = server.requests.find(r => r.path.endsWith('/n1/snooze')).body;
  assert.match(snoozeBody.until, /^\d{4}-\d\d-\d\dT/);
  s.deliver(ev(8, 'notification', n(8)));
  s.deliver(ev(9, 'unsnoozed', { id: 'n1' }));
  await c.markAllRead({ category: null });
  assert.deepEqual(server.requests.at(-1).body, { up_to_seq: 9 }, 'up to what the client has applied');
  assert.ok(c.notifications.every(x => x.read_at));
  s.deliver(ev(10, 'notification', n(10)));
  assert.equal(byId('n10').read_at, null, 'a bulk change does not cover what came after it');
  s.deliver(ev(11, 'read_all', { up_to_seq: 9, category: null, read_at: 'r' }));
  assert.ok(renders > 0);
  c.stop();
});

test('loadMore pages without duplicates or lost changes while events arrive', async () => {
  const server = fakeHerald();
  server.pages = [
    page([n(6), n(5)], { next_before: 5, last_seq: 6 }),
    // Read before seq 7..9 committed.
    page([n(4), n(3)], { next_before: 3, last_seq: 6 }),
    page([n(2), n(1)], { next_before: null, last_seq: 10 }),
  ];
  const c = await live(server);
  assert.equal(c.hasMore, true);
  server.hold('/v1/me/notifications?');
  const loading = c.loadMore();
  assert.equal(c.loadMore(), loading, 'one page at a time');
  const s = server.socket();
  s.deliver(ev(7, 'notification', n(7)));
  s.deliver(ev(8, 'deleted', { id: 'n4' }));
  s.deliver(ev(9, 'read', { id: 'n3', read_at: 'r9' }));
  server.release();
  assert.equal(await loading, true);
  assert.deepEqual(ids(c), ['n7', 'n6', 'n5', 'n3']);
  assert.equal(c.notifications[3].read_at, 'r9');
  s.deliver(ev(10, 'unarchived', { id: 'n1' })); // below the loaded pages: the next page has it
  assert.equal(await c.loadMore(), true);
  assert.deepEqual(ids(c), ['n7', 'n6', 'n5', 'n3', 'n2', 'n1']);
  assert.equal(c.hasMore, false);
  assert.equal(await c.loadMore(), false);
  assert.equal(new Set(ids(c)).size, ids(c).length);
  c.stop();
});

test('views and categories', async () => {
  const server = fakeHerald();
  server.pages = [page([n(2), n(1)]), page([n(1, { archived_at: 'a', category: 'ci' })], { last_seq: 2 })];
  server.answer = () => ({ status: 200, body: n(3, { archived_at: 'a3', category: 'ci' }) });
  const c = await live(server);
  await c.setFilter({ view: 'archived', category: 'ci' });
  assert.match(server.requests.filter(r => r.path.startsWith('/v1/me/notifications?')).at(-1).path, /status=archived&.*category=ci/);
  assert.deepEqual(ids(c), ['n1']);
  server.socket().deliver(ev(3, 'archived', { id: 'n3', archived_at: 'a3' }));
  await until(() => ids(c).length === 2, 'fetched into the archive');
  assert.deepEqual(ids(c), ['n3', 'n1']);
  c.stop();
});

test('snapshots change identity exactly when something changed', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)])];
  const c = await live(server);
  await until(() => c.preferences, 'the preferences document');
  const a = c.snapshot;
  assert.equal(c.snapshot, a);
  assert.ok(Object.isFrozen(a));
  server.socket().deliver(ev(2, 'notification', n(2)));
  const b = c.snapshot;
  assert.notEqual(b, a);
  assert.equal(b.notifications.length, 2);
  assert.equal(a.notifications.length, 1, 'an old snapshot stays as it was');
  server.socket().deliver(ev(2, 'notification', n(2)));
  assert.equal(c.snapshot, b, 'a duplicate changes nothing');
  c.stop();
});

test('preferences: the document after the first page, then its events; an answer older than an event is dropped', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)])];
  let answers = 0;
  server.answer = (method, path, body) => {
    if (path === '/v1/me/preferences') {
      answers++;
      return { status: 200, body: { categories: { ci: { enabled: answers === 1 } } } };
    }
    return { status: 200, body: { categories: {}, seen: body } };
  };
  const c = await live(server);
  await until(() => c.preferences, 'loaded');
  assert.deepEqual(c.preferences, { categories: { ci: { enabled: true } } });
  assert.equal(c.ready, true);

  await c.setPreference('ci', false);
  const put = server.requests.at(-1);
  assert.equal(put.method, 'PUT');
  assert.equal(put.path, '/v1/me/preferences/categories/ci');
  assert.deepEqual(put.body, { enabled: false });
  assert.deepEqual(c.preferences.categories.ci, { enabled: true }, 'the event decides, not the answer');
  server.socket().deliver(ev(2, 'preferences', { categories: { ci: { enabled: false } }, counts: { unread: 1, unseen: 1 } }));
  assert.deepEqual(c.preferences, { categories: { ci: { enabled: false } } });

  // A reset reloads the page, then asks again; an event that arrives while
  // that request runs is newer than its answer.
  server.pages = [page([n(1)], { last_seq: 3 })];
  server.hold('/v1/me/preferences');
  server.socket().deliver(ev(3, 'reset', { last_seq: 3 }));
  await until(() => server.held.length === 1, 'asked again');
  server.socket().deliver(ev(4, 'preferences', { categories: { ci: { enabled: false }, ads: { enabled: false } } }));
  server.release();
  await settle();
  assert.deepEqual(c.preferences, { categories: { ci: { enabled: false }, ads: { enabled: false } } });
  c.stop();
});

test('a subscriber that throws does not stop the client; its error is rethrown on its own', async () => {
  const server = fakeHerald();
  server.pages = [page([n(1)])];
  const c = await live(server);
  // The client rethrows in a microtask of its own (where a browser reports
  // it); here those are caught, to check what they throw.
  const real = globalThis.queueMicrotask;
  const rethrown = [];
  globalThis.queueMicrotask = fn => { try { fn(); } catch (err) { rethrown.push(err.message); } };
  const off = c.subscribe(() => { throw new Error('a rendering bug'); });
  try {
    server.socket().deliver(ev(2, 'notification', n(2)));
    server.socket().deliver(ev(3, 'notification', n(3)));
    assert.equal(c.lastSeq, 3, 'both applied');
    assert.deepEqual(ids(c), ['n3', 'n2', 'n1']);
    assert.deepEqual(rethrown, ['a rendering bug', 'a rendering bug']);
  } finally {
    off();
    globalThis.queueMicrotask = real;
  }
});
