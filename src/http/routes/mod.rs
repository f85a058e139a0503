//! The route table. `ROUTES` is generated from the same list that registers
//! the handlers, and a test checks it against `openapi.yaml`.

mod admin;
mod broadcast;
mod extractors;
mod me;
mod ops;
mod poll;
mod preferences;
mod publish;
mod schedules;
mod stream;
mod topics;
mod webhooks;
mod ws;

pub use extractors::{json_config, path_config, query_config};
pub use ops::not_found;

use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::http::error::ApiError;

macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route as `(method, path)`, exactly as openapi.yaml lists them.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn configure(cfg: &mut web::ServiceConfig) {
            let mut i = 0;
            $(
                cfg.route($path, web::$method().to($handler));
                i += 1;
                // Right after the path's last route: methods no route of the
                // path takes answer 405, before a later pattern can match
                // (so `GET .../read-all` is 405, not a malformed `{id}`).
                if !ROUTES[i..].iter().any(|&(_, p)| p == $path) {
                    cfg.service(web::resource($path).to(method_not_allowed));
                }
            )*
        }
    };
}

/// A listed path with a method it does not support: 405 with `Allow`.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let pattern = req.match_pattern().unwrap_or_default();
    let allow = allowed_methods(&pattern);
    let mut response = ApiError::MethodNotAllowed(format!(
        "{} is not supported here; use {allow}",
        req.method()
    ))
    .error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}

/// The methods the route table serves on `path`, as an `Allow` value.
fn allowed_methods(path: &str) -> String {
    ROUTES
        .iter()
        .filter(|(_, p)| *p == path)
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ")
}

// Requests are matched against the routes in this order, one pattern after
// the other: the publishes, the hottest path, come first. Static paths do
// not overlap, so the order changes nothing else.
route_table! {
    post   "/v1/notifications"                  => publish::publish;
    post   "/v1/notifications/batch"            => publish::publish_batch;
    get    "/"                                  => ops::page;
    get    "/app.js"                            => ops::script;
    get    "/i18n.js"                           => ops::i18n_script;
    get    "/app.css"                           => ops::stylesheet;
    get    "/client/herald.js"                  => ops::client_script;
    get    "/client/miniprogram.js"             => ops::client_script;
    get    "/healthz"                           => ops::healthz;
    get    "/readyz"                            => ops::readyz;
    get    "/metrics"                           => ops::metrics;
    get    "/openapi.yaml"                      => ops::openapi;
    get    "/v1/schedules/{id}"                 => schedules::get;
    delete "/v1/schedules/{id}"                 => schedules::cancel;
    get    "/v1/topics"                         => topics::list;
    get    "/v1/topics/{topic}/subscribers"     => topics::subscribers;
    put    "/v1/topics/{topic}/subscribers"     => topics::subscribe;
    delete "/v1/topics/{topic}/subscribers"     => topics::unsubscribe;
    post   "/v1/broadcasts"                     => broadcast::create;
    get    "/v1/me/notifications"               => me::list;
    post   "/v1/me/notifications/read-all"      => me::read_all;
    post   "/v1/me/notifications/seen-all"      => me::seen_all;
    post   "/v1/me/notifications/archive-all"   => me::archive_all;
    post   "/v1/me/notifications/delete-all"    => me::delete_all;
    get    "/v1/me/counts"                      => me::counts;
    get    "/v1/me/topics"                      => topics::mine;
    get    "/v1/me/preferences"                 => preferences::get;
    put    "/v1/me/preferences/categories/{category}" => preferences::set;
    get    "/v1/me/notifications/{id}"          => me::get;
    delete "/v1/me/notifications/{id}"          => me::delete;
    post   "/v1/me/notifications/{id}/read"     => me::read;
    post   "/v1/me/notifications/{id}/unread"   => me::unread;
    post   "/v1/me/notifications/{id}/seen"     => me::seen;
    post   "/v1/me/notifications/{id}/archive"  => me::archive;
    post   "/v1/me/notifications/{id}/unarchive" => me::unarchive;
    post   "/v1/me/notifications/{id}/snooze"   => me::snooze;
    post   "/v1/me/notifications/{id}/unsnooze" => me::unsnooze;
    post   "/v1/me/notifications/{id}/actions/{action_id}" => me::act;
    get    "/v1/me/stream"                      => stream::sse;
    get    "/v1/me/ws"                          => ws::ws;
    get    "/v1/me/events"                      => poll::events;
    get    "/v1/admin/stats"                    => admin::stats;
    get    "/v1/admin/broadcasts/{id}"          => broadcast::get;
    post   "/v1/admin/webhooks"                 => webhooks::create;
    get    "/v1/admin/webhooks"                 => webhooks::list;
    delete "/v1/admin/webhooks/{id}"            => webhooks::delete;
    get    "/v1/admin/users/{user_id}/notifications"      => admin::list;
    delete "/v1/admin/users/{user_id}/notifications/{id}" => admin::delete;
    post   "/v1/admin/users/{user_id}/disconnect"         => admin::disconnect;
    get    "/v1/admin/users/{user_id}/preferences"        => preferences::admin_get;
    put    "/v1/admin/users/{user_id}/preferences/categories/{category}" => preferences::admin_set;
}
