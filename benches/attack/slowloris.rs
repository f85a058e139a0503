//! Slowloris on every route: request heads, bodies with a length, and
//! chunked bodies that never finish, each sent a byte at a time, with and
//! without a valid token (without one the handler answers 401 and never
//! reads the body); and a second request head stalled on a kept-alive
//! connection. The server must close every such connection within its
//! request timeout (plus a grace for actix's 500 ms clock and the
//! disconnect timeout).

use std::time::Duration;

use futures_util::future::join_all;
use herald::http::routes::ROUTES;

use crate::Config;
use crate::raw::{Ended, trickle};
use crate::report::{Outcome, Tally};
use crate::target::Target;

/// Beyond the request timeout, how long the server may take to close.
const GRACE: Duration = Duration::from_secs(3);
/// One byte this often: slower than any legitimate client, faster than
/// any idle timeout.
const EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Head,
    LengthBody { token: bool },
    ChunkedBody { token: bool },
    SecondHead,
}

impl Kind {
    fn label(self) -> String {
        match self {
            Self::Head => "slow head".into(),
            Self::LengthBody { token } => format!("slow Content-Length body, {}", who(token)),
            Self::ChunkedBody { token } => format!("chunked body never ended, {}", who(token)),
            Self::SecondHead => "slow 2nd head on kept-alive conn".into(),
        }
    }
}

fn who(token: bool) -> &'static str {
    if token { "admin token" } else { "no token" }
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "00000000-0000-4000-8000-000000000001")
        .replace("{user_id}", "attack-victim")
}

/// Routes whose handler legitimately keeps a valid request open.
fn streaming(path: &str) -> bool {
    matches!(path, "/v1/me/stream" | "/v1/me/ws" | "/v1/me/events")
}

fn request(kind: Kind, method: &str, path: &str, admin: &str) -> (Vec<u8>, Vec<u8>) {
    let auth = |token: bool| {
        if token {
            format!("Authorization: Bearer {admin}\r\n")
        } else {
            String::new()
        }
    };
    match kind {
        Kind::Head => (
            format!("{method} {path} HTTP/1.1\r\nHost: a\r\n").into_bytes(),
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(),
        ),
        Kind::LengthBody { token } => (
            format!(
                "{method} {path} HTTP/1.1\r\nHost: a\r\n{}Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
                auth(token)
            )
            .into_bytes(),
            b" ".to_vec(),
        ),
        Kind::ChunkedBody { token } => (
            format!(
                "{method} {path} HTTP/1.1\r\nHost: a\r\n{}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                auth(token)
            )
            .into_bytes(),
            b"1\r\n \r\n".to_vec(),
        ),
        Kind::SecondHead => (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n".to_vec(),
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(),
        ),
    }
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let per_case = config.n(10);
    let hold = config.request_timeout + GRACE * 2;
    let mut cases = Vec::new();
    for &(method, pattern) in ROUTES {
        let method = method.to_ascii_uppercase();
        let path = concrete(pattern);
        let mut kinds = vec![
            Kind::Head,
            Kind::LengthBody { token: false },
            Kind::ChunkedBody { token: false },
        ];
        if !streaming(pattern) {
            kinds.push(Kind::LengthBody { token: true });
            kinds.push(Kind::ChunkedBody { token: true });
        }
        for kind in kinds {
            for _ in 0..per_case {
                cases.push((
                    kind,
                    format!("{method} {pattern}"),
                    request(kind, &method, &path, &target.admin),
                ));
            }
        }
    }
    for _ in 0..per_case * 4 {
        let kind = Kind::SecondHead;
        cases.push((
            kind,
            "GET /healthz".to_owned(),
            request(kind, "GET", "/healthz", &target.admin),
        ));
    }
    let total = cases.len();
    println!(
        "{total} slow connections on {} routes, one byte every {} ms, held up to {:.0} s",
        ROUTES.len(),
        EVERY.as_millis(),
        hold.as_secs_f64()
    );
    let addr = target.addr.clone();
    let ended: Vec<(Kind, String, Ended)> =
        join_all(cases.into_iter().map(|(kind, route, (head, piece))| {
            let addr = addr.clone();
            async move {
                (
                    kind,
                    route,
                    trickle(&addr, &head, &piece, EVERY, hold).await,
                )
            }
        }))
        .await;

    let mut outcome = Outcome::default();
    let limit = config.request_timeout + GRACE;
    let mut kinds: Vec<Kind> = ended.iter().map(|(k, _, _)| *k).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<&Ended> = ended
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, _, e)| e)
            .collect();
        let mut kept_by: Vec<&str> = ended
            .iter()
            .filter(|(k, _, e)| *k == kind && e.closed_after.is_none())
            .map(|(_, route, _)| route.as_str())
            .collect();
        kept_by.dedup();
        let mut statuses = Tally::default();
        let mut closes: Vec<u64> = Vec::new();
        let mut open = 0;
        for e in &of_kind {
            statuses.add(e.label());
            match e.closed_after {
                Some(t) => closes.push(t.as_millis() as u64),
                None => open += 1,
            }
        }
        closes.sort_unstable();
        let late = closes
            .iter()
            .filter(|&&t| t > limit.as_millis() as u64)
            .count();
        let when = if closes.is_empty() {
            "none closed".to_owned()
        } else {
            format!(
                "closed by server {}/{} after {:.1}–{:.1} s (median {:.1} s)",
                closes.len(),
                of_kind.len(),
                closes[0] as f64 / 1e3,
                closes[closes.len() - 1] as f64 / 1e3,
                closes[closes.len() / 2] as f64 / 1e3
            )
        };
        outcome.row(
            format!("{} ×{}", kind.label(), of_kind.len()),
            format!(
                "{statuses}; {when}; still open at {:.0} s: {open}",
                hold.as_secs_f64()
            ),
        );
        if open > 0 || late > 0 {
            outcome.finding(format!(
                "{}: {open} connections still open after {:.0} s, {late} closed later than {:.0} s; kept open by: {}",
                kind.label(),
                hold.as_secs_f64(),
                limit.as_secs_f64(),
                if kept_by.is_empty() { "-".to_owned() } else { kept_by.join(", ") }
            ));
        }
    }
    Ok(outcome)
}
