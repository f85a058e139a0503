//! A TCP proxy on loopback in front of a PostgreSQL Unix socket, that can
//! freeze the LISTEN connections it carries: it stops forwarding their bytes
//! in both directions without closing anything, as a dead network path does
//! (no FIN, no RST). Connections opened after the freeze flow normally.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Notify;

pub struct FreezableProxy {
    pub port: u16,
    state: Arc<State>,
}

struct State {
    next_id: AtomicU64,
    /// Listener connections with an id below this are frozen.
    frozen_before: AtomicU64,
    thawed: Notify,
}

impl FreezableProxy {
    /// Forwards `127.0.0.1:<port>` to the server socket in `socket_dir`.
    pub async fn start(socket_dir: PathBuf) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let state = Arc::new(State {
            next_id: AtomicU64::new(0),
            frozen_before: AtomicU64::new(0),
            thawed: Notify::new(),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = tcp.accept().await else {
                    return;
                };
                let Ok(server) = UnixStream::connect(socket_dir.join(".s.PGSQL.5432")).await else {
                    continue;
                };
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                let is_listener = Arc::new(AtomicBool::new(false));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    Arc::clone(&shared),
                    id,
                    Arc::clone(&is_listener),
                    true,
                ));
                tokio::spawn(pump(
                    server_read,
                    client_write,
                    Arc::clone(&shared),
                    id,
                    is_listener,
                    false,
                ));
            }
        });
        Self { port, state }
    }

    /// From now on, the LISTEN connections open so far forward nothing.
    pub fn freeze_listeners(&self) {
        let next = self.state.next_id.load(Ordering::SeqCst);
        self.state.frozen_before.store(next, Ordering::SeqCst);
    }
}

/// Copies one direction of a connection, holding bytes while it is frozen.
/// The client's startup message names the application, which is how a
/// LISTEN connection (`herald-listener`) is told apart.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    state: Arc<State>,
    id: u64,
    is_listener: Arc<AtomicBool>,
    from_client: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if from_client
            && !is_listener.load(Ordering::SeqCst)
            && buf[..n]
                .windows(b"herald-listener".len())
                .any(|w| w == b"herald-listener")
        {
            is_listener.store(true, Ordering::SeqCst);
        }
        while is_listener.load(Ordering::SeqCst) && id < state.frozen_before.load(Ordering::SeqCst)
        {
            // Held for good: nothing thaws a frozen connection.
            state.thawed.notified().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
