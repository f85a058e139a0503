// A small typed program against the declarations, checked with
// `tsc --noEmit --strict` (test/package/types.test.js): what the README shows
// must type-check, and misuse must not.
import { createClient, type HeraldClient, type HeraldEvent, type Notification, type Snapshot } from 'herald-client';
import { createClient as createMiniProgramClient } from 'herald-client/miniprogram';
import { useInbox } from 'herald-client/react';

const client: HeraldClient = createClient({
  url: 'https://herald.example.com',
  getToken: async () => (await fetch('/api/herald-token')).text(),
  transports: ['sse', 'ws', 'poll'],
});

async function main(): Promise<void> {
  await client.start();
  const state: 'connecting' | 'live' | 'reconnecting' | 'closed' = client.state;
  const unread: number = client.counts.unread + client.counts.unseen;
  const first: Notification | undefined = client.notifications[0];
  if (first) {
    const title: string = first.title;
    const read: boolean = first.read_at !== null;
    const labels: string[] = first.actions.map(a => a.label);
    await client.markRead(first.id);
    await client.snooze(first.id, new Date(Date.now() + 3600_000));
    if (first.actions[0]) await client.act(first.id, first.actions[0].id);
    void [title, read, labels];
  }
  const off = client.subscribe(() => render(client.snapshot));
  const offEvents = client.on('event', (e: HeraldEvent) => console.log(e.seq, e.type, e.data.counts?.unread));
  client.on('error', e => console.warn(e.status, e.problem?.detail));
  client.on('state', s => console.log(s));
  const more: boolean = await client.loadMore();
  await client.markAllRead({ category: 'billing' });
  await client.markAllRead();
  await client.setFilter({ view: 'archived' });
  off();
  offEvents();
  client.stop();
  void [state, unread, more];
}

function render(s: Snapshot): string {
  return `${s.state} ${s.transport ?? '-'} ${s.notifications.length} ${s.counts.unread} ${s.hasMore} ${s.leader}`;
}

// A WeChat mini-program (uni-app passes `uni` the same way).
declare const wx: {
  request(o: { url: string; success?(r: { statusCode: number; data: any }): void; fail?(e: { errMsg?: string }): void }): { abort(): void };
  connectSocket(o: { url: string; fail?(e: any): void }): {
    onOpen(cb: (r: any) => void): void;
    onMessage(cb: (m: { data: string | ArrayBuffer }) => void): void;
    onClose(cb: (r: { code?: number; reason?: string }) => void): void;
    onError(cb: (e: any) => void): void;
    send(o: { data: string }): void;
    close(o: { code?: number }): void;
  };
};
const mini: HeraldClient = createMiniProgramClient({ url: 'https://herald.example.com', getToken: () => 'jwt', wx });

// React: the snapshot as state.
function Badge({ c }: { c: HeraldClient }): string {
  const inbox: Snapshot = useInbox(c);
  return String(inbox.counts.unread);
}

// Misuse is caught.
// @ts-expect-error: no such transport
createClient({ url: 'x', getToken: () => 'jwt', transports: ['carrier-pigeon'] });
// @ts-expect-error: getToken is required
createClient({ url: 'x' });
// @ts-expect-error: the mini-program entry needs `wx`
createMiniProgramClient({ url: 'x', getToken: () => 'jwt' });
// @ts-expect-error: notifications are read-only
client.notifications.push(client.notifications[0]!);
// @ts-expect-error: counts are numbers
const wrong: string = client.counts.unread;

void [main, mini, Badge, wrong];
