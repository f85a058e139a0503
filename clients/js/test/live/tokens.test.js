// Tokens against a live Herald: renewed before exp without leaving 'live',
// asked again when the server refuses one or ends a stream at exp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { createClient } from '../../herald.js';
import { HERALD, keep, matchesServer, mint, publish, until, user } from './support.js';

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

for (const transport of ['sse', 'ws', 'poll']) {
  test(`${transport}: a token about to expire is renewed and the client stays live`, async () => {
    const sub = user(`node-renew-${transport}`);
    let asked = 0;
    // Three-second tokens: Herald closes live connections at exp.
    const c = keep(createClient({
      url: HERALD, WebSocket, share: false, transports: [transport],
      getToken: () => { asked++; return mint(sub, { ttl: 3 }); },
    }));
    await c.start();
    await until(() => c.state === 'live', 'live');
    const states = [];
    c.on('state', s => states.push(s));
    await sleep(4500); // past the first token's exp
    assert.ok(asked >= 2, `getToken asked ${asked} times`);
    await publish(sub, { title: 'after the first token expired' });
    await matchesServer(c, sub);
    assert.deepEqual(states, [], 'no moment away from live');
    c.stop();
  });
}

test('a refused token asks getToken again, and so does a stream the server ends at exp', async () => {
  const sub = user('node-refused');
  await publish(sub, { title: 'one' });
  // First a token signed with another key (refused with 401); then twice the
  // same short one (so the renewal before exp brings nothing new and the
  // server ends the stream at exp); then good ones.
  const short = mint(sub, { ttl: 3 });
  const given = [mint(sub, { secret: 'not-the-servers-secret-not-the-servers' }), short, short];
  let asked = 0;
  const c = keep(createClient({
    url: HERALD, share: false, transports: ['sse'],
    getToken: () => given[asked++] ?? mint(sub),
  }));
  const states = [];
  c.on('state', s => states.push(s));
  await c.start();
  assert.equal(asked, 2, 'asked again after the 401');
  await until(() => c.state === 'live', 'live');
  await until(() => asked >= 4, 'asked again when the stream ended at exp', 8000);
  await until(() => c.state === 'live', 'live with a good token');
  assert.ok(states.includes('reconnecting'), `states: ${states}`);
  await publish(sub, { title: 'two' });
  await matchesServer(c, sub);
  c.stop();
});
