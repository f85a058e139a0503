//! Request logs and metrics.
//!
//! Request spans record the path but never the query string: `access_token`
//! travels there, and no token may reach a log line.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

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

/// Root span per request: method, matched route, path without query,
/// request id; one log line when the response is sent.
pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        request.extensions_mut().insert(Started(Instant::now()));
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %route,
            path = %request.path(),
            request_id = %request_id,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            let status = response.status().as_u16();
            span.record("status", status);
            let route = response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".into());
            let elapsed = response
                .request()
                .extensions()
                .get::<Started>()
                .map(|s| s.0.elapsed().as_secs_f64())
                .unwrap_or_default();
            metrics::counter!(
                "herald_http_requests_total",
                "route" => route,
                "method" => method_label(response.request().method()),
                "status" => status_label(status)
            )
            .increment(1);
            span.in_scope(|| {
                tracing::info!(status, elapsed_ms = (elapsed * 1000.0) as u64, "response")
            });
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

#[derive(Clone, Copy)]
struct Started(Instant);

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
