// A React application on herald-client, bundled with esbuild by the test:
// the package's own entries (herald.js and react.js), React from npm.
import { createRoot } from 'react-dom/client';
import { createClient } from '../../herald.js';
import { useInbox } from '../../react.js';
import { config, getToken, probe, watch } from './harness.js';

const client = createClient({ url: config.herald, getToken, transports: config.transports, share: config.share });
watch(client);

const when = iso => new Date(iso).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });

function Notification({ n }) {
  return (
    <li className={n.read_at ? 'read' : 'unread'} data-id={n.id}>
      <div className="content">
        <span className="title">{n.title}</span>
        {n.category && <span className="category">{n.category}</span>}
        {n.body && <p className="body">{n.body}</p>}
        <time dateTime={n.created_at}>{when(n.created_at)}</time>
      </div>
      <div className="actions">
        {n.read_at
          ? <button className="unread-button" onClick={() => client.markUnread(n.id)}>Mark unread</button>
          : <button className="read-button" onClick={() => client.markRead(n.id)}>Mark read</button>}
        <button className="archive-button" onClick={() => client.archive(n.id)}>Archive</button>
      </div>
    </li>
  );
}

function Inbox() {
  const inbox = useInbox(client);
  return (
    <main>
      <h1>
        Notifications <span id="badge" className="badge">{inbox.counts.unread}</span>
        <span className="unseen">{inbox.counts.unseen} unseen</span>
      </h1>
      <p id="status" className={`status ${inbox.state}`}>
        {inbox.state}{inbox.transport ? ` · ${inbox.transport}` : ''}{inbox.leader ? '' : ' · shared'}
      </p>
      <button id="read-all" onClick={() => client.markAllRead()}>Mark all read</button>
      <ul id="list">{inbox.notifications.map(n => <Notification key={n.id} n={n} />)}</ul>
      {inbox.hasMore && <button id="more" onClick={() => client.loadMore()}>Load older</button>}
    </main>
  );
}

createRoot(document.querySelector('#root')).render(<Inbox />);
client.start().catch(e => probe.errors.push(`start: ${e.message}`));
