// The client as a page without a framework loads it: the module Herald
// serves at /client/herald.js, from Herald's origin.
import { config, getToken, probe, watch } from './harness.js';

const { createClient } = await import(`${config.herald}/client/herald.js`);
const client = createClient({ url: config.herald, getToken, transports: config.transports, share: config.share });
watch(client);

const list = document.querySelector('#list');
client.subscribe(() => {
  document.querySelector('#badge').textContent = String(client.counts.unread);
  document.querySelector('#status').textContent = `${client.state} · ${client.transport ?? '-'}`;
  list.replaceChildren(...client.notifications.map(n => {
    const li = document.createElement('li');
    li.className = n.read_at ? 'read' : 'unread';
    li.dataset.id = n.id;
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = n.title;
    li.append(title);
    return li;
  }));
});
client.start().catch(e => probe.errors.push(`start: ${e.message}`));
