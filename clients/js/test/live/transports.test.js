// The client against a live Herald from Node, on each transport: SSE (the
// client's own fetch stream parser), WebSocket (the `ws` package) and
// long-polling (fetch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { createClient } from '../../herald.js';
import { HERALD, as, disconnect, keep, leavesNothing, matchesServer, mint, publish, recordingFetch, until, user } from './support.js';

function client(sub, transport, options = {}) {
  return keep(createClient({
    url: HERALD,
    getToken: () => mint(sub),
    transports: [transport],
    WebSocket,
    share: false,
    ...options,
  }));
}

/** Every event the client applies, to check order and uniqueness. */
function record(c) {
  const seqs = [];
  c.on('event', e => { if (e.type !== 'reset') seqs.push(e.seq); });
  return seqs;
}

const strictlyIncreasing = seqs => seqs.every((s, i) => i === 0 || s > seqs[i - 1]);

for (const transport of ['sse', 'ws', 'poll']) {
  test(`${transport}: every change exactly once, in order, through a server drop, with optimistic changes`, async () => {
    const sub = user(`node-${transport}`);
    const first = await publish(sub, { title: 'before start' });
    const fetchFn = recordingFetch();
    const c = client(sub, transport, { fetch: fetchFn });
    const seqs = record(c);
    await c.start();
    assert.deepEqual(c.notifications.map(n => n.id), [first.id]);
    await until(() => c.state === 'live', 'live');
    assert.equal(c.transport, transport);

    // Publishes, changes from this client and from another device, and the
    // server dropping every connection of the user halfway.
    const published = [];
    for (let i = 0; i < 5; i++) published.push(await publish(sub, { title: `n${i}`, category: i % 2 ? 'odd' : 'even' }));
    await until(() => c.notifications.length === 6, 'the five live ones');
    await c.markRead(published[0].id);
    assert.ok(c.notifications.find(n => n.id === published[0].id).read_at, 'shown read at once');
    await c.archive(published[1].id);
    assert.equal(c.notifications.find(n => n.id === published[1].id), undefined, 'archived at once');
    await disconnect(sub);
    for (let i = 5; i < 10; i++) published.push(await publish(sub, { title: `n${i}` }));
    await as(sub, 'POST', '/v1/me/notifications/read-all', { category: 'even' });
    await as(sub, 'DELETE', `/v1/me/notifications/${published[3].id}`);
    await c.markSeen(published[9].id);
    await until(() => c.state === 'live', 'live again');
    await matchesServer(c, sub);
    assert.ok(strictlyIncreasing(seqs), `applied in order, once each: ${seqs}`);
    assert.equal(c.notifications.length, 9);

    await leavesNothing(c, fetchFn, transport);
  });

  test(`${transport}: a reset reloads the first page and continues from its last_seq`, async () => {
    const sub = user(`node-reset-${transport}`);
    await publish(sub, { title: 'one' });
    await publish(sub, { title: 'two' });
    // The first page claims a last_seq far ahead of the server's, as after
    // a restore from an older backup: the server answers the resume with a reset.
    let lists = 0;
    const fetchAhead = async (url, init) => {
      const res = await fetch(url, init);
      if (!String(url).includes('/v1/me/notifications?') || lists++ > 0) return res;
      const page = await res.json();
      return new Response(JSON.stringify({ ...page, last_seq: page.last_seq + 1000 }), { status: res.status, headers: res.headers });
    };
    const c = client(sub, transport, { fetch: fetchAhead });
    const types = [];
    c.on('event', e => types.push(e.type));
    await c.start();
    assert.equal(c.lastSeq, 1002);
    await until(() => types.includes('reset'), 'a reset');
    await until(() => c.lastSeq === 2 && lists === 2, 'the first page again');
    await publish(sub, { title: 'three' });
    await matchesServer(c, sub);
    assert.deepEqual(c.notifications.map(n => n.title), ['three', 'two', 'one']);
    c.stop();
  });
}

test('loadMore pages without duplicates while notifications keep arriving', async () => {
  const sub = user('node-pages');
  for (let i = 0; i < 12; i++) await publish(sub, { title: `old ${i}` });
  const c = client(sub, 'sse', { pageSize: 5 });
  await c.start();
  await until(() => c.state === 'live', 'live');
  assert.equal(c.notifications.length, 5);
  const arriving = (async () => {
    for (let i = 0; i < 6; i++) await publish(sub, { title: `new ${i}` });
  })();
  while (c.hasMore) await c.loadMore();
  await arriving;
  await matchesServer(c, sub);
  const ids = c.notifications.map(n => n.id);
  assert.equal(ids.length, 18);
  assert.equal(new Set(ids).size, 18);
  c.stop();
});
