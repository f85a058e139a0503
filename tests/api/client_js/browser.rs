//! Pages built on the client in headless Chromium: a React application
//! (bundled with esbuild from the package's entries) and a plain page that
//! loads the module Herald serves. Both live on an origin of their own and
//! reach Herald through its CORS settings, as an application would. They
//! sign their tokens in the page (`test/browser/harness.js`) and record the
//! client's states and events in `window.probe`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{js_dir, require_node_modules};
use crate::support::chromium::{Browser, Tab};
use crate::support::paths::enc;
use crate::support::static_files::StaticFiles;
use crate::support::{Herald, Service, TEST_SECRET, TestApp, fresh_database, scratch_dir};

const LIVE: &str = "document.body.dataset.state === 'live'";

/// The test pages, and the React one bundled from `react-app.jsx` (into a
/// directory of `test`'s own: tests run at once).
async fn pages(test: &str) -> StaticFiles {
    require_node_modules();
    let out = scratch_dir(&format!("client-js-{test}"));
    let status = std::process::Command::new(js_dir().join("node_modules/.bin/esbuild"))
        .args([
            "test/browser/react-app.jsx",
            "--bundle",
            "--format=esm",
            "--jsx=automatic",
            "--define:process.env.NODE_ENV=\"production\"",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.join("react-app.js").display()))
        .current_dir(js_dir())
        .status()
        .expect("esbuild runs");
    assert!(status.success(), "esbuild bundles the React page");
    StaticFiles::serve(vec![js_dir().join("test/browser"), out]).await
}

/// `page` of `pages` as `user` of the Herald at `herald`; `extra` adds to the query.
fn url(pages: &StaticFiles, page: &str, herald: &str, user: &str, extra: &str) -> String {
    format!(
        "{}/{page}?herald={}&user={}&secret={}{extra}",
        pages.origin,
        enc(herald),
        enc(user),
        enc(TEST_SECRET)
    )
}

/// Herald in this process, letting the pages' origin call it. A server
/// notices that a client went away when it next writes to its stream: with a
/// heartbeat every second, the connection counts follow closed tabs quickly.
async fn herald_for(pages: &StaticFiles) -> TestApp {
    let origin = pages.origin.clone();
    TestApp::spawn_with(move |s| {
        s.cors.allowed_origins = vec![origin];
        s.server.heartbeat_secs = 1;
    })
    .await
}

async fn browser(name: &str) -> Browser {
    Browser::launch_with(name, &["--accept-lang=en-US,en"]).await
}

impl Tab<'_> {
    async fn shown(&self) -> Value {
        self.eval("[...document.querySelectorAll('#list li .title')].map(e => e.textContent)")
            .await
    }

    async fn items_are(&self, n: usize) {
        self.until_within(
            &format!("document.querySelectorAll('#list li').length === {n}"),
            Duration::from_secs(20),
        )
        .await;
    }

    /// The client applied every event once, in order (a reset aside).
    async fn assert_applied_in_order(&self) {
        let events = self.eval("probe.events.filter(e => e !== 'reset')").await;
        let seqs: Vec<i64> = serde_json::from_value(events).unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "applied out of order or twice: {seqs:?}"
        );
    }

    async fn probe(&self, what: &str) -> Value {
        self.eval(&format!("probe.{what}")).await
    }
}

/// The server's last seq for `user`.
async fn last_seq(service: &Service, user: &str) -> Value {
    let r = service
        .get(Some(user), "/v1/me/notifications?limit=1")
        .await;
    r.json::<Value>().await.unwrap()["last_seq"].clone()
}

/// Live connections on `app`, all transports.
async fn connections(app: &TestApp) -> i64 {
    let stats = app.stats().await;
    ["sse", "ws", "poll"]
        .iter()
        .map(|t| stats["connections"][t].as_i64().unwrap())
        .sum()
}

async fn connections_become(app: &TestApp, n: i64) {
    crate::support::wait_for(|| async { connections(app).await == n }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_react_page_shows_the_inbox_live_and_after_a_server_drop() {
    let pages = pages("react").await;
    let app = herald_for(&pages).await;
    let user = "react-reader";
    for (title, body, category) in [
        (
            "Invoice #1042 is due",
            "Due on Friday: 120.00 EUR",
            "billing",
        ),
        (
            "Alice commented on your review",
            "Looks good to me, one nit.",
            "reviews",
        ),
        ("Weekly digest", "12 new items in your projects", "digest"),
    ] {
        let r = app
            .post_notification(
                &json!({"recipients": [user], "title": title, "body": body, "category": category}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let browser = browser("client-react").await;
    let tab = browser
        .open(&url(&pages, "react.html", &app.address, user, ""), None)
        .await;
    tab.until(LIVE).await;
    tab.items_are(3).await;
    assert_eq!(tab.eval("document.body.dataset.transport").await, "sse");
    assert_eq!(
        tab.eval("document.querySelector('#badge').textContent")
            .await,
        "3"
    );

    let r = app
        .post_notification(&json!({"recipients": [user], "title": "Deploy finished", "body": "v2.4.0 is live in production", "category": "ci"}))
        .await;
    assert_eq!(r.status(), 201);
    tab.items_are(4).await;
    assert_eq!(
        tab.shown().await,
        json!([
            "Deploy finished",
            "Weekly digest",
            "Alice commented on your review",
            "Invoice #1042 is due"
        ])
    );
    tab.until("document.querySelector('#badge').textContent === '4'")
        .await;

    // A click marks it read at once; the badge follows the server's count.
    tab.eval("[...document.querySelectorAll('#list li')].find(li => li.textContent.includes('Weekly digest')).querySelector('.read-button').click()")
        .await;
    tab.until("[...document.querySelectorAll('#list li.read')].length === 1")
        .await;
    tab.until("document.querySelector('#badge').textContent === '3'")
        .await;

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let shot = tab.screenshot_into(&dir, "client-react.png").await;
    let size = std::fs::metadata(&shot).unwrap().len();
    eprintln!("screenshot: {} ({size} bytes)", shot.display());
    assert!(
        size > 20_000,
        "the screenshot shows the page ({size} bytes)"
    );

    // The server drops the connection; a notification is published while
    // the page is away; it arrives once the client has reconnected.
    let id = herald::domain::UserId::parse(user).unwrap();
    assert!(app.handle.state().hub.kick(&id));
    let r = app
        .post_notification(&json!({"recipients": [user], "title": "Published while away"}))
        .await;
    assert_eq!(r.status(), 201);
    tab.items_are(5).await;
    tab.until(LIVE).await;
    assert!(
        tab.probe("states")
            .await
            .as_array()
            .unwrap()
            .contains(&json!("reconnecting")),
        "it noticed the drop"
    );
    tab.assert_applied_in_order().await;
    let service = Service::of(&app);
    assert_eq!(
        tab.eval("Number(document.body.dataset.lastSeq)").await,
        last_seq(&service, user).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_carries_on_after_a_kill_dash_nine_and_restart_of_herald() {
    let pages = pages("kill").await;
    let db = fresh_database().await;
    let mut herald =
        Herald::start_with(&db, &[("HERALD__CORS__ALLOWED_ORIGINS", &pages.origin)]).await;
    let service = Service::new(herald.base());
    let user = "survivor";
    service.publish(&[user], "Before the crash").await;
    let browser = browser("client-kill").await;
    // The plain page: the module Herald itself serves.
    let tab = browser
        .open(&url(&pages, "page.html", &herald.base(), user, ""), None)
        .await;
    tab.until(LIVE).await;
    tab.items_are(1).await;

    herald.kill().await;
    tab.until("document.body.dataset.state === 'reconnecting'")
        .await;
    herald.restart().await;
    service.publish(&[user], "After the restart").await;
    tab.items_are(2).await;
    tab.until_within(LIVE, Duration::from_secs(30)).await;
    assert_eq!(
        tab.shown().await,
        json!(["After the restart", "Before the crash"])
    );
    assert_eq!(
        tab.eval("Number(document.body.dataset.lastSeq)").await,
        last_seq(&service, user).await
    );
    tab.assert_applied_in_order().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_renewed_before_it_expires_and_the_page_stays_live() {
    let pages = pages("tokens").await;
    let app = herald_for(&pages).await;
    let browser = browser("client-tokens").await;

    // Four-second tokens: Herald ends live connections at exp.
    let tab = browser
        .open(
            &url(&pages, "page.html", &app.address, "short-lived", "&ttl=4"),
            None,
        )
        .await;
    tab.until(LIVE).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    app.publish(&["short-lived"], "After the first token expired")
        .await;
    tab.items_are(1).await;
    let asked = tab.probe("asked").await.as_i64().unwrap();
    assert!(
        asked >= 3,
        "getToken asked {asked} times in 6 s of 4-second tokens"
    );
    assert_eq!(
        tab.eval("probe.states.slice(probe.states.indexOf('live'))")
            .await,
        json!(["live"]),
        "never away from live"
    );

    // A token the server refuses: getToken is asked again at once.
    let tab = browser
        .open(
            &url(&pages, "page.html", &app.address, "refused-first", "&bad"),
            None,
        )
        .await;
    tab.until(LIVE).await;
    assert_eq!(tab.probe("asked").await, 2);
    app.publish(&["refused-first"], "Signed in after all").await;
    tab.items_are(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_share_one_connection_and_the_next_takes_over_with_no_gap() {
    let pages = pages("tabs").await;
    let app = herald_for(&pages).await;
    for (election, before_load) in [
        ("locks", None),
        // Without Web Locks: the heartbeat on the BroadcastChannel.
        (
            "heartbeat",
            Some("Object.defineProperty(navigator, 'locks', { value: undefined })"),
        ),
    ] {
        let user = format!("two-tabs-{election}");
        let browser = browser(&format!("client-tabs-{election}")).await;
        let page = url(&pages, "page.html", &app.address, &user, "");
        let one = browser.open(&page, before_load).await;
        one.until(LIVE).await;
        let two = browser.open(&page, before_load).await;
        two.until(LIVE).await;
        connections_become(&app, 1).await;
        let leaders = [
            one.eval("document.body.dataset.leader").await,
            two.eval("document.body.dataset.leader").await,
        ];
        assert_eq!(
            leaders,
            [json!("true"), json!("false")],
            "{election}: the first tab leads"
        );
        assert_eq!(two.eval("document.body.dataset.transport").await, "sse");

        app.publish(&[&user], "To both tabs").await;
        one.items_are(1).await;
        two.items_are(1).await;

        // The leader's tab closes, and a notification follows at once: the
        // other tab takes over from its own last seq and misses nothing.
        one.close().await;
        app.publish(&[&user], "Right after the leader left").await;
        two.items_are(2).await;
        two.until("document.body.dataset.leader === 'true'").await;
        two.until(LIVE).await;
        connections_become(&app, 1).await;
        assert_eq!(
            two.shown().await,
            json!(["Right after the leader left", "To both tabs"])
        );
        two.assert_applied_in_order().await;
        two.close().await;
        connections_become(&app, 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sse_is_blocked_the_client_falls_back_to_websocket_then_to_long_polling() {
    let pages = pages("fallback").await;
    let app = herald_for(&pages).await;
    const BLOCK_SSE: &str = "{ const f = window.fetch; \
        window.fetch = (u, i) => String(u).includes('/v1/me/stream') ? Promise.reject(new TypeError('blocked')) : f(u, i); }";
    const BLOCK_WS: &str = "{ const W = window.WebSocket; \
        window.WebSocket = class extends W { constructor() { super('ws://127.0.0.1:1/'); } }; }";
    let browser = browser("client-fallback").await;
    for (user, blocked, transport) in [
        ("no-sse", BLOCK_SSE.to_owned(), "ws"),
        ("no-sse-no-ws", format!("{BLOCK_SSE} {BLOCK_WS}"), "poll"),
    ] {
        let tab = browser
            .open(
                &url(&pages, "page.html", &app.address, user, ""),
                Some(&blocked),
            )
            .await;
        tab.until_within(LIVE, Duration::from_secs(20)).await;
        assert_eq!(tab.eval("document.body.dataset.transport").await, transport);
        app.publish(&[user], &format!("Over {transport}")).await;
        tab.items_are(1).await;
        assert_eq!(tab.shown().await, json!([format!("Over {transport}")]));
        tab.close().await;
    }
}
