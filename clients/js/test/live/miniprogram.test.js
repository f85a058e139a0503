// The mini-program entry against a live Herald, with a `wx` (and a `uni`)
// implemented over real sockets: wx.request over node:http, wx.connectSocket
// over the `ws` package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';

import { createClient } from '../../miniprogram.js';
import { HERALD, connections, disconnect, keep, matchesServer, mint, publish, until, user } from './support.js';

/**
 * WeChat's API as mini-programs see it: callbacks, `statusCode`, tasks with
 * on* registration. `socketsFail` makes every socket fail to connect, as on a
 * network that blocks WebSocket. `promises` makes it behave like uni-app,
 * which returns a promise (and no task) when no callback is given.
 */
function miniProgramApi({ socketsFail = false, promises = false } = {}) {
  let inFlight = 0;
  const api = {
    sockets: 0,
    open: () => inFlight,
    request({ url, method = 'GET', header = {}, data, timeout = 60000, success, fail }) {
      if (promises && !success && !fail) throw new Error('the client must pass callbacks (uni-app would return a promise)');
      const body = data == null ? undefined : typeof data == 'string' ? data : JSON.stringify(data);
      inFlight++;
      let settled = false;
      const settle = () => { if (!settled) { settled = true; inFlight--; } };
      const req = http.request(url, { method, headers: header, timeout }, res => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', chunk => { text += chunk; });
        res.on('end', () => {
          settle();
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* dataType json: left as text when it is not */ }
          success?.({ statusCode: res.statusCode, data: parsed, header: res.headers });
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', e => { settle(); fail?.({ errMsg: `request:fail ${e.message}` }); });
      req.end(body);
      return { abort: () => req.destroy(new Error('abort')) };
    },
    connectSocket({ url, fail }) {
      if (promises && !fail) throw new Error('the client must pass a callback (uni-app would return a promise)');
      api.sockets++;
      const handlers = { open: [], message: [], close: [], error: [] };
      const fire = (type, value) => { for (const fn of handlers[type]) fn(value); };
      const task = {
        onOpen: fn => handlers.open.push(fn),
        onMessage: fn => handlers.message.push(fn),
        onClose: fn => handlers.close.push(fn),
        onError: fn => handlers.error.push(fn),
        send: ({ data }) => ws?.send(data),
        close: ({ code } = {}) => ws?.close(code),
      };
      let ws = null;
      if (socketsFail) {
        setTimeout(() => {
          fail?.({ errMsg: 'connectSocket:fail' });
          fire('error', { errMsg: 'connectSocket:fail' });
        }, 5);
        return task;
      }
      ws = new WebSocket(url);
      ws.on('open', () => fire('open', {}));
      ws.on('message', (data, binary) => fire('message', { data: binary ? data : data.toString() }));
      ws.on('close', code => fire('close', { code, reason: '' }));
      ws.on('error', e => fire('error', { errMsg: e.message }));
      return task;
    },
  };
  return api;
}

for (const [name, options] of [['wx', {}], ['uni', { promises: true }]]) {
  test(`${name}: live over wx.connectSocket, changes through wx.request, back after a server drop`, async () => {
    const sub = user(`mini-${name}`);
    await publish(sub, { title: 'first' });
    const wx = miniProgramApi(options);
    const c = keep(createClient({ url: HERALD, getToken: () => mint(sub), wx }));
    await c.start();
    await until(() => c.state === 'live', 'live');
    assert.equal(c.transport, 'ws');
    const second = await publish(sub, { title: 'second' });
    await until(() => c.notifications.length === 2, 'the live one');
    await c.markRead(second.id);
    await disconnect(sub);
    await publish(sub, { title: 'while away' });
    await until(() => wx.sockets >= 2 && c.state === 'live', 'reconnected');
    await matchesServer(c, sub);
    assert.deepEqual(c.notifications.map(n => n.title), ['while away', 'second', 'first']);
    c.stop();
    await until(async () => (await connections()).ws === 0, 'socket closed on the server');
  });
}

test('when sockets fail, the mini-program client long-polls through wx.request', async () => {
  const sub = user('mini-poll');
  const wx = miniProgramApi({ socketsFail: true });
  const c = keep(createClient({ url: HERALD, getToken: () => mint(sub), wx }));
  await c.start();
  await until(() => c.state === 'live', 'live', 15000);
  assert.equal(c.transport, 'poll');
  assert.equal(wx.sockets, 2, 'two tries with sockets first');
  await publish(sub, { title: 'by long-poll' });
  await matchesServer(c, sub);
  assert.deepEqual(c.notifications.map(n => n.title), ['by long-poll']);
  c.stop();
  await until(() => wx.open() === 0, 'the waiting poll aborted');
});
