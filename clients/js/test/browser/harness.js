// What the test pages share: their settings from the query string, a
// getToken that signs HS256 tokens in the page (as an application's backend
// would mint them), and a record of the client's states and events for the
// browser tests to read (window.probe).
const q = new URLSearchParams(location.search);

export const config = {
  herald: q.get('herald'),
  user: q.get('user'),
  ttl: Number(q.get('ttl') || 3600),
  secret: q.get('secret'),
  // The first token is signed with a key the server does not know.
  bad: q.has('bad'),
  transports: q.get('transports')?.split(','),
  share: q.get('share') !== '0',
};

export const probe = { asked: 0, states: [], events: [], errors: [] };
window.probe = probe;

const utf8 = s => new TextEncoder().encode(s);
const b64url = bytes => btoa(String.fromCharCode(...bytes)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');

export async function getToken() {
  probe.asked++;
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64url(utf8(JSON.stringify({ alg: 'HS256', typ: 'JWT' })))}.${b64url(utf8(JSON.stringify({ sub: config.user, iat: now, exp: now + config.ttl })))}`;
  const secret = config.bad && probe.asked === 1 ? 'a-key-the-server-does-not-know-at-all' : config.secret;
  const key = await crypto.subtle.importKey('raw', utf8(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return `${body}.${b64url(new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(body))))}`;
}

/** Records what the client does, and mirrors it on <body> for the tests' conditions. */
export function watch(client) {
  probe.client = client;
  client.on('state', s => probe.states.push(s));
  client.on('event', e => probe.events.push(e.type === 'reset' ? 'reset' : e.seq));
  client.on('error', e => probe.errors.push(`${e.status ?? ''} ${e.message}`));
  client.subscribe(() => {
    const d = document.body.dataset;
    d.state = client.state;
    d.transport = client.transport ?? '';
    d.lastSeq = String(client.lastSeq);
    d.leader = String(client.leader);
    d.unread = String(client.counts.unread);
  });
}
