//! Builds the application: pool, migrations, live path, publisher, server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::http::auth::Verifier;
use crate::http::limits::PublishLimiter;
use crate::http::routes;
use crate::http::slow_heads::{self, SlowHeads};
use crate::http::state::AppState;
use crate::http::telemetry::{self, AccessLog};
use crate::http::token_cache::TokenCache;
use crate::http::{body_deadline, cors};
use crate::inbox::Inbox;
use crate::inbox::broadcaster::Broadcaster;
use crate::inbox::group_commit::GroupCommit;
use crate::inbox::schedules::Schedules;
use crate::inbox::webhooks::Webhooks;
use crate::jobs::{
    heartbeat, purge as retention, schedules as schedule_loop, timers, webhooks as webhook_loop,
};
use crate::live::Hub;
use crate::live::listener::{self, ListenerConfig};
use crate::live::log_reader::LogReader;
use crate::live::subscription::Subscriptions;
use crate::settings::Settings;

/// How long a connection may wait between requests (actix's default, set
/// here so that it stays below the head deadline of `http::slow_heads`).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Application {
    port: u16,
    server: Server,
    handle: AppHandle,
    background: Vec<JoinHandle<()>>,
}

/// Stops a running application: live connections end first, then the server.
#[derive(Clone)]
pub struct AppHandle {
    shutdown: CancellationToken,
    server: ServerHandle,
    state: web::Data<AppState>,
}

impl AppHandle {
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.server.stop(true).await;
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Binds `listen` with a listen queue of `backlog` (std's bind always asks
/// for 128).
fn bind(listen: &str, backlog: u32) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in listen.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        let bound = socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(backlog.min(i32::MAX as u32) as i32));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => anyhow::Error::new(e).context(format!("binding {listen}")),
        None => anyhow::anyhow!("{listen} resolves to no address"),
    })
}

impl Application {
    /// Connects to `database_url`, runs migrations, binds the listener and
    /// starts the background tasks. The server runs once awaited.
    pub async fn build(settings: Settings, database_url: &str) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let pool = db::pool(&settings.database, database_url)?;
        db::migrate(&pool).await?;
        let listener_pool = db::listen_pool(&settings.database, database_url, "herald-listener")?;
        let webhook_pool = db::listen_pool(&settings.database, database_url, "herald-webhooks")?;
        let tcp = bind(&settings.server.listen, settings.server.backlog)?;
        let port = tcp.local_addr()?.port();
        Self::start(settings, pool, [listener_pool, webhook_pool], tcp, port)
    }

    fn start(
        settings: Arc<Settings>,
        pool: PgPool,
        [listener_pool, webhook_pool]: [PgPool; 2],
        tcp: TcpListener,
        port: u16,
    ) -> anyhow::Result<Self> {
        let verifier = web::Data::new(Verifier::from_settings(&settings)?);
        let token_cache = web::Data::new(TokenCache::new()?);
        let shutdown = CancellationToken::new();
        let instance = uuid::Uuid::new_v4().to_string();
        let hub = Hub::new(settings.stream.max_streams_per_user);
        let publisher = GroupCommit::start(
            pool.clone(),
            Arc::clone(&hub),
            instance.clone(),
            settings.publish.clone(),
        );
        let started_at = crate::domain::now_micros();
        let (broadcaster, broadcasts) = Broadcaster::start(
            pool.clone(),
            publisher.clone(),
            settings.publish.broadcast_chunk,
            shutdown.clone(),
        );
        let inbox = Inbox::new(pool.clone(), Arc::clone(&hub), &instance);
        let schedules = Schedules::new(pool.clone());
        let webhooks = Webhooks::new(pool.clone(), settings.webhooks.allow_private_urls);
        let mut background = vec![
            tokio::spawn(listener::run(
                ListenerConfig {
                    listen_pool: listener_pool,
                    pool: pool.clone(),
                    instance: instance.clone(),
                    check_every: settings.database.listener_check(),
                },
                Arc::clone(&hub),
                shutdown.clone(),
            )),
            tokio::spawn(telemetry::run_metrics_upkeep(shutdown.clone())),
            tokio::spawn(retention::run(
                pool.clone(),
                inbox.clone(),
                settings.retention.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(timers::run(
                inbox.clone(),
                settings.timers.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(schedule_loop::run(
                schedules.clone(),
                publisher.clone(),
                settings.timers.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(heartbeat::run(
                pool.clone(),
                instance.clone(),
                started_at,
                shutdown.clone(),
            )),
            tokio::spawn(webhook_loop::run(
                pool.clone(),
                webhook_pool,
                settings.webhooks.clone(),
                shutdown.clone(),
            )),
            broadcasts,
        ];
        if let Some(keys) = verifier.key_set() {
            background.push(tokio::spawn(keys.clone().run(shutdown.clone())));
        }
        let _ = telemetry::metrics_handle();
        let log = LogReader::start(
            pool.clone(),
            settings.stream.replay_page,
            settings.stream.replay_page_bytes,
        );
        let live = Subscriptions::new(
            Arc::clone(&hub),
            log,
            settings.stream.clone(),
            shutdown.clone(),
        );
        let state = web::Data::new(AppState {
            inbox,
            live,
            pool,
            hub,
            publisher,
            settings: Arc::clone(&settings),
            instance,
            started_at,
            broadcaster,
            schedules,
            webhooks,
            publish_limit: PublishLimiter::new(
                settings.publish.rate_per_sec,
                settings.publish.burst,
            ),
            readiness: Default::default(),
        });
        let app_state = state.clone();
        let body_limit = settings.server.max_body_bytes;
        let access_sample = settings.log.access_sample;
        let cors_settings = settings.cors.clone();
        let body_timeout = settings.server.client_request_timeout();
        let slow_heads = SlowHeads::default();
        let heads = slow_heads.clone();
        let mut server = HttpServer::new(move || {
            let heads = heads.clone();
            App::new()
                .wrap(middleware::from_fn(move |req, next| {
                    body_deadline::enforce(req, next, body_timeout)
                }))
                // Outermost but for logging: a request is in progress until
                // its whole answer is written.
                .wrap(middleware::from_fn(move |req, next| {
                    slow_heads::track(req, next, heads.clone())
                }))
                .wrap(cors::middleware(&cors_settings))
                .wrap(cors::problems())
                // Outside CORS, so preflight answers and refusals get them too.
                .wrap(
                    middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "no-referrer"))
                        .add(("X-Frame-Options", "DENY")),
                )
                .wrap(AccessLog::new(access_sample))
                .app_data(app_state.clone())
                .app_data(verifier.clone())
                .app_data(token_cache.clone())
                .app_data(routes::json_config(body_limit))
                .app_data(routes::path_config())
                .app_data(routes::query_config())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .on_connect({
            let slow_heads = slow_heads.clone();
            move |connection, data| slow_heads.on_connect(connection, data)
        })
        .listen(tcp)?
        .disable_signals()
        // Streams end on shutdown by themselves; this only bounds stragglers.
        .shutdown_timeout(5)
        .keep_alive(KEEP_ALIVE)
        // Slow-request protection: the first request head must arrive in
        // time. Only the head: open streams are not cut.
        .client_request_timeout(settings.server.client_request_timeout())
        .client_disconnect_timeout(settings.server.client_disconnect_timeout());
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.run();
        // A request head has its deadline on every request of a connection,
        // not only on its first (see `http::slow_heads`). With the default
        // settings an idle connection that honestly waits is closed by the
        // keep-alive timer (5 s) before that deadline (10 s).
        background.push(tokio::spawn(
            slow_heads.sweep(settings.server.client_request_timeout(), shutdown.clone()),
        ));
        let handle = AppHandle {
            shutdown,
            server: server.handle(),
            state,
        };
        Ok(Self {
            port,
            server,
            handle,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.handle.shutdown.cancel();
        for task in self.background {
            let _ = task.await;
        }
        result
    }
}
