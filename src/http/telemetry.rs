//! Request logs and metrics.
//!
//! Access-log lines record the path but never the query string:
//! `access_token` travels there, and no token may reach a log line.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpRequest};
use futures_util::future::LocalBoxFuture;
use metrics::Counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::state::AppState;

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("valid buckets")
            .install_recorder()
            .expect("the metrics recorder is installed once");
        register_series();
        handle
    })
}

/// Folds recorded histogram samples into their buckets every few seconds.
/// The exporter keeps raw samples until a scrape or an upkeep, so without
/// this a process nobody scrapes would grow with every publish.
pub async fn run_metrics_upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => metrics_handle().run_upkeep(),
        }
    }
}

/// Series that should be scraped (at zero) before anything happened.
fn register_series() {
    for transport in ["sse", "ws", "poll"] {
        metrics::gauge!("herald_connections", "transport" => transport).increment(0.0);
        metrics::counter!("herald_delivered_events_total", "transport" => transport).increment(0);
        metrics::counter!("herald_slow_client_disconnects_total", "transport" => transport)
            .increment(0);
    }
    for kind in ["unsnoozed", "expired"] {
        metrics::counter!("herald_timer_events_total", "kind" => kind).increment(0);
    }
    for name in [
        "herald_replayed_events_total",
        "herald_resets_total",
        "herald_listener_connects_total",
        "herald_rate_limited_total",
        "herald_webhook_deliveries_total",
        "herald_webhook_delivery_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::describe_histogram!(
        "herald_publish_seconds",
        metrics::Unit::Seconds,
        "publish request: accepted to committed"
    );
    metrics::describe_histogram!(
        "herald_publish_to_deliver_seconds",
        metrics::Unit::Seconds,
        "publish request accepted to event handed to a live connection of the same instance"
    );
    metrics::describe_histogram!(
        "herald_publish_batch_requests",
        "publish requests committed per transaction"
    );
}

/// Gauges read at scrape time.
pub fn record_gauges(state: &AppState) {
    metrics::gauge!("herald_users_online").set(state.hub.user_count() as f64);
    metrics::gauge!("herald_db_pool_connections").set(state.pool.size() as f64);
    metrics::gauge!("herald_db_pool_idle").set(state.pool.num_idle() as f64);
}

/// The access log and the request series, as one middleware.
///
/// One structured event per logged request (`herald::access`: method, route,
/// path, status, elapsed_ms), built only for requests that are logged, and
/// no span: a span per request cost a formatted copy of its fields and a
/// registry entry, on every request, whether logged or not.
/// `log.access_sample` = n logs one in n requests answered below 400, counted
/// per worker; every answer of 400 and above is logged.
#[derive(Clone, Copy)]
pub struct AccessLog {
    sample: u32,
}

impl AccessLog {
    pub fn new(sample: u32) -> Self {
        Self { sample }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService {
            service,
            sample: self.sample,
            seen: Rc::new(Cell::new(0)),
        }))
    }
}

pub struct AccessLogService<S> {
    service: S,
    sample: u32,
    /// Requests below 400 this worker has answered (for sampling).
    seen: Rc<Cell<u32>>,
}

impl<S, B> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let answer = self.service.call(request);
        let (sample, seen) = (self.sample, Rc::clone(&self.seen));
        Box::pin(async move {
            let response = answer.await?;
            let status = response.status().as_u16();
            let log = status >= 400 || {
                let n = seen.get();
                seen.set(if n + 1 >= sample { 0 } else { n + 1 });
                sample != 0 && n == 0
            };
            record(&response, status, started, log);
            Ok(response)
        })
    }
}

fn record<B>(response: &ServiceResponse<B>, status: u16, started: Instant, log: bool) {
    let request = response.request();
    let method = method_label(request.method());
    let route = count_request(request, method, status);
    if log {
        // The path, never the query string: `access_token` travels there.
        tracing::info!(
            target: "herald::access",
            method,
            route = &*route,
            path = request.path(),
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

thread_local! {
    /// This worker's request counters of the routes without parameters, by
    /// path: such a request (`POST /v1/notifications`) is counted without
    /// walking the route table again to name its route and without building
    /// the series' key. Bounded by the route table: only a path that is a
    /// route's pattern itself is kept.
    static STATIC_ROUTES: RefCell<HashMap<Box<str>, RouteCounters>> = RefCell::new(HashMap::new());
}

/// One route's request counters, by method label and status.
type RouteCounters = HashMap<(&'static str, u16), Counter>;

fn request_counter(route: &str, method: &'static str, status: u16) -> Counter {
    metrics::counter!(
        "herald_http_requests_total",
        "route" => route.to_owned(),
        "method" => method,
        "status" => status_label(status)
    )
}

/// Counts the request in `herald_http_requests_total`; its route label.
fn count_request<'a>(request: &'a HttpRequest, method: &'static str, status: u16) -> Cow<'a, str> {
    let path = request.path();
    let known = STATIC_ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        let counters = routes.get_mut(path)?;
        counters
            .entry((method, status))
            .or_insert_with(|| request_counter(path, method, status))
            .increment(1);
        Some(())
    });
    if known.is_some() {
        return Cow::Borrowed(path);
    }
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let counter = request_counter(&route, method, status);
    counter.increment(1);
    if route == path {
        STATIC_ROUTES.with(|routes| {
            routes
                .borrow_mut()
                .entry(path.into())
                .or_default()
                .insert((method, status), counter);
        });
    }
    Cow::Owned(route)
}

// Every label value of a request series comes from a closed set: anyone can
// send any method to any path without a token, and each new label value is
// a new series kept in memory and in every scrape for the process's life.
// The route is the matched pattern (from the route table) or `unmatched`.

/// The standard methods by name; anything else is `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status codes this service answers with by number; any other as its
/// class (`2xx` ... `5xx`).
fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 20] = [
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (406, "406"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (503, "503"),
    ];
    if let Some((_, label)) = KNOWN.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
