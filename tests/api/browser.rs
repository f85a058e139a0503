//! The message-center page in a real headless Chromium, driven through the
//! DevTools protocol: live delivery, reconnect after the server drops the
//! connection, tabs converging through the log, the transport fallbacks, the
//! page's two languages, and sign-in links for another user. The inbox
//! features of contract v2 are in `browser/inbox.rs`, the settings panel
//! (category preferences) in `browser/preferences.rs`.

mod inbox;
mod preferences;

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::chromium::{Browser, Tab};
use crate::support::{TestApp, WAIT};

impl Tab<'_> {
    /// Waits until the page has applied every event of `user`'s log.
    async fn caught_up(&self, app: &TestApp, user: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let server = app.list(user, "?limit=1").await["last_seq"].clone();
            let page = self.eval("Number(document.body.dataset.lastSeq)").await;
            if page == server {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page is at seq {page}, the server at {server}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn titles(&self) -> Value {
        self.eval(
            "[...document.querySelectorAll('li.notification .title')].map(e => e.textContent)",
        )
        .await
    }

    /// The text of every element matching `selector`, in document order.
    async fn texts(&self, selector: &str) -> Value {
        self.eval(&format!(
            "[...document.querySelectorAll({})].map(e => e.textContent)",
            json!(selector)
        ))
        .await
    }

    /// The text of the element matching `selector`.
    async fn text(&self, selector: &str) -> Value {
        self.eval(&format!(
            "document.querySelector({})?.textContent",
            json!(selector)
        ))
        .await
    }

    /// Reloads the page and waits until the new document is live.
    async fn reload_until_live(&self) {
        // After the evaluation has answered: a reload that starts before
        // the answer fails the evaluation ("Inspected target navigated").
        self.eval("window.beforeReload = true; setTimeout(() => location.reload()); true")
            .await;
        self.until(&format!("!window.beforeReload && {LIVE}")).await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        self.screenshot_into(&dir, name).await
    }
}

fn page_url(app: &TestApp, user: &str, query: &str) -> String {
    format!("{}/{query}#token={}", app.address, app.token(user, &[]))
}

const LIVE: &str = "document.body.dataset.connection === 'live'";
const ONE_ITEM: &str = "document.querySelectorAll('li.notification').length === 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_published_notification_live_and_after_a_server_drop() {
    let app = TestApp::spawn().await;
    app.publish(&["browser-user"], "Loaded with the page").await;
    let browser = Browser::launch("live").await;
    let tab = browser
        .open(&page_url(&app, "browser-user", ""), None)
        .await;
    tab.until(LIVE).await;
    assert_eq!(tab.eval("document.body.dataset.transport").await, "sse");
    assert_eq!(tab.titles().await, json!(["Loaded with the page"]));
    assert_eq!(
        tab.eval("location.hash").await,
        "",
        "the token leaves the address bar"
    );

    let started = std::time::Instant::now();
    let r = app
        .post_notification(&json!({"recipients": ["browser-user"], "title": "Deploy finished", "body": "v2 is live", "category": "ci"}))
        .await;
    assert_eq!(r.status(), 201);
    tab.until("document.querySelectorAll('li.notification').length === 2")
        .await;
    eprintln!("publish to on-screen: {:?}", started.elapsed());
    assert_eq!(
        tab.titles().await,
        json!(["Deploy finished", "Loaded with the page"])
    );
    assert_eq!(
        tab.eval("document.querySelector('#unread-count').textContent")
            .await,
        "2"
    );
    let shot = tab.screenshot("message-center.png").await;
    eprintln!("screenshot: {}", shot.display());

    // The server drops the connection; a notification is published while
    // the browser is away; it shows up after the browser reconnects itself.
    let user = herald::domain::UserId::parse("browser-user").unwrap();
    assert!(app.handle.state().hub.kick(&user));
    app.publish(&["browser-user"], "Published while away").await;
    tab.until("document.body.dataset.connection === 'reconnecting'")
        .await;
    tab.until("document.querySelectorAll('li.notification').length === 3")
        .await;
    tab.until(LIVE).await;
    assert_eq!(
        tab.titles().await,
        json!([
            "Published while away",
            "Deploy finished",
            "Loaded with the page"
        ])
    );
    // Every event of the log applied (the page's own seen-all requests add
    // events of their own, so the count is the server's to say).
    tab.caught_up(&app, "browser-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_one_tab_updates_the_badge_in_another() {
    let app = TestApp::spawn().await;
    app.publish(&["two-tabs"], "first").await;
    app.publish(&["two-tabs"], "second").await;
    let browser = Browser::launch("tabs").await;
    let one = browser.open(&page_url(&app, "two-tabs", ""), None).await;
    one.until(LIVE).await;
    let two = browser.open(&page_url(&app, "two-tabs", ""), None).await;
    two.until(LIVE).await;
    for tab in [&one, &two] {
        tab.until("document.querySelector('#unread-count').textContent === '2'")
            .await;
    }
    one.eval(
        "document.querySelector('li.notification[data-seq=\"2\"] button.read-toggle').click()",
    )
    .await;
    for tab in [&one, &two] {
        tab.until("document.querySelector('#unread-count').textContent === '1'")
            .await;
        tab.until("!document.querySelector('li.notification[data-seq=\"2\"]').classList.contains('unread')").await;
    }
    two.eval("document.querySelector('#mark-all-read').click()")
        .await;
    for tab in [&one, &two] {
        tab.until("document.querySelector('#unread-count').textContent === '0'")
            .await;
    }
    // Only the leader tab holds a live connection.
    assert_eq!(
        app.handle
            .state()
            .hub
            .stats
            .connections(herald::live::connection_stats::Transport::Sse),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_eventsource_the_page_falls_back_to_websocket_then_long_polling() {
    let app = TestApp::spawn().await;
    let browser = Browser::launch("fallback").await;
    let ws = browser
        .open(
            &page_url(&app, "no-sse", ""),
            Some("delete window.EventSource;"),
        )
        .await;
    ws.until(LIVE).await;
    assert_eq!(ws.eval("document.body.dataset.transport").await, "ws");
    app.publish(&["no-sse"], "over a socket").await;
    ws.until("document.querySelectorAll('li.notification').length === 1")
        .await;
    assert_eq!(ws.titles().await, json!(["over a socket"]));

    // Another browser: a link for a second user in the same one would ask
    // before replacing the first user's session.
    let browser = Browser::launch("fallback-poll").await;
    let poll = browser
        .open(
            &page_url(&app, "no-sse-no-ws", ""),
            Some("delete window.EventSource; delete window.WebSocket;"),
        )
        .await;
    poll.until(LIVE).await;
    assert_eq!(poll.eval("document.body.dataset.transport").await, "poll");
    app.publish(&["no-sse-no-ws"], "by long-polling").await;
    poll.until("document.querySelectorAll('li.notification').length === 1")
        .await;
    assert_eq!(poll.titles().await, json!(["by long-polling"]));
}

/// What the message center shows in one language, for the same two unread
/// notifications published three minutes ago.
struct Texts {
    lang: &'static str,
    heading: &'static str,
    live: &'static str,
    signed_in_as: &'static str,
    two_unread: &'static str,
    one_unread: &'static str,
    mark_read: &'static str,
    mark_unread: &'static str,
    three_minutes_ago: &'static str,
    mark_all_read: &'static str,
    delete: &'static str,
}

const ENGLISH: Texts = Texts {
    lang: "en",
    heading: "Notifications",
    live: "Live · SSE",
    signed_in_as: "Signed in as reader",
    two_unread: "2 unread",
    one_unread: "1 unread",
    mark_read: "Mark read",
    mark_unread: "Mark unread",
    three_minutes_ago: "3 minutes ago",
    mark_all_read: "Mark all read",
    delete: "Delete",
};

const CHINESE: Texts = Texts {
    lang: "zh-CN",
    heading: "通知",
    live: "实时 · SSE",
    signed_in_as: "当前用户：reader",
    two_unread: "2 条未读",
    one_unread: "1 条未读",
    mark_read: "标为已读",
    mark_unread: "标为未读",
    three_minutes_ago: "3分钟前",
    mark_all_read: "全部标为已读",
    delete: "删除",
};

impl Tab<'_> {
    /// Every text of the center is in `texts`' language; `unread` of the two
    /// notifications are unread (the newer ones first).
    async fn assert_speaks(&self, texts: &Texts, unread: usize) {
        let summary = if unread == 2 {
            texts.two_unread
        } else {
            texts.one_unread
        };
        // The summary changes last (after the event is applied): wait for it.
        self.until(&format!(
            "document.querySelector('#unread-summary').textContent === {}",
            json!(summary)
        ))
        .await;
        assert_eq!(self.eval("document.documentElement.lang").await, texts.lang);
        assert_eq!(self.text("#center-heading").await, texts.heading);
        assert_eq!(self.text("#connection").await, texts.live);
        assert_eq!(self.text("#signed-in-as").await, texts.signed_in_as);
        assert_eq!(self.text("#mark-all-read").await, texts.mark_all_read);
        let toggles: Vec<&str> = (0..2)
            .map(|i| {
                if i < unread {
                    texts.mark_read
                } else {
                    texts.mark_unread
                }
            })
            .collect();
        assert_eq!(
            self.texts("li.notification .read-toggle").await,
            json!(toggles)
        );
        assert_eq!(
            self.texts("li.notification .delete").await,
            json!([texts.delete, texts.delete])
        );
        assert_eq!(
            self.texts("li.notification time").await,
            json!([texts.three_minutes_ago, texts.three_minutes_ago])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_speaks_the_readers_language_english_or_chinese_and_switches() {
    let app = TestApp::spawn().await;
    app.publish(&["reader"], "Build finished").await;
    app.publish(&["reader"], "Review requested").await;
    for (texts, accept) in [(&ENGLISH, "en-US,en"), (&CHINESE, "zh-CN,zh")] {
        // Three minutes old as far as the page can tell, for the next 59 s
        // (each language's run takes a fraction of that).
        sqlx::query(
            "UPDATE notifications SET created_at = now() - interval '3 minutes 1 second' \
             WHERE user_id = 'reader'",
        )
        .execute(&app.pool)
        .await
        .unwrap();
        let browser = Browser::launch_with(
            &format!("lang-{}", texts.lang),
            &[&format!("--accept-lang={accept}")],
        )
        .await;
        let tab = browser.open(&page_url(&app, "reader", ""), None).await;
        tab.until(LIVE).await;
        tab.assert_speaks(texts, 2).await;
        // Counts follow the log in the reader's language too.
        tab.eval(
            "document.querySelector('li.notification[data-seq=\"1\"] button.read-toggle').click()",
        )
        .await;
        tab.assert_speaks(texts, 1).await;
        let shot = tab
            .screenshot(&format!("message-center-{}.png", texts.lang))
            .await;
        eprintln!("screenshot: {}", shot.display());
        // Mark it unread again for the next language's run.
        tab.eval(
            "document.querySelector('li.notification[data-seq=\"1\"] button.read-toggle').click()",
        )
        .await;
        tab.assert_speaks(texts, 2).await;

        if texts.lang != "zh-CN" {
            continue;
        }
        // A Chinese browser's reader switches to English in the page; the
        // choice outlives a reload, whatever the browser's languages say.
        let switch_to = |lang: &str| {
            format!(
                "const s = document.querySelector('#language'); s.value = '{lang}'; \
                 s.dispatchEvent(new Event('change'))"
            )
        };
        assert_eq!(
            tab.eval("[...document.querySelectorAll('#language option')].map(o => o.textContent)")
                .await,
            json!(["English", "简体中文"])
        );
        tab.eval(&switch_to("en")).await;
        tab.assert_speaks(&ENGLISH, 2).await;
        tab.reload_until_live().await;
        tab.assert_speaks(&ENGLISH, 2).await;
        assert_eq!(
            tab.eval("document.querySelector('#language').value").await,
            "en"
        );
        tab.eval(&switch_to("zh-CN")).await;
        tab.assert_speaks(&CHINESE, 2).await;

        // Signed out, the sign-in form speaks it as well.
        tab.eval("document.querySelector('#signout').click()").await;
        tab.until("document.body.dataset.connection === 'closed'")
            .await;
        assert_eq!(tab.text("#signin h2").await, "登录");
        assert_eq!(tab.text("#signin-message").await, "已退出登录。");
        assert_eq!(tab.text("#connection").await, "未登录");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_for_another_user_asks_before_replacing_the_session() {
    let app = TestApp::spawn().await;
    app.publish(&["alice"], "For alice").await;
    app.publish(&["mallory"], "For mallory").await;
    let browser = Browser::launch_with("switch", &["--accept-lang=en-US,en"]).await;
    let own = browser.open(&page_url(&app, "alice", ""), None).await;
    own.until(LIVE).await;
    assert_eq!(own.text("#signed-in-as").await, "Signed in as alice");
    assert_eq!(own.titles().await, json!(["For alice"]));
    let alice_token = own.eval("sessionStorage.getItem('herald.token')").await;
    assert!(alice_token.is_string());

    // A crafted link, opened in a new tab, meets the browser's stored session.
    let crafted = browser.open(&page_url(&app, "mallory", ""), None).await;
    const ASKING: &str = "document.querySelector('#switch-dialog').open";
    crafted.until(ASKING).await;
    assert_eq!(
        crafted.text("#switch-text").await,
        "This link signs you in as mallory. You are signed in as alice."
    );
    assert_eq!(crafted.text("#switch-keep").await, "Stay alice");
    assert_eq!(crafted.text("#switch-accept").await, "Switch to mallory");
    assert_eq!(
        crafted.eval("location.href.includes('token')").await,
        false,
        "the fragment leaves the address bar at once"
    );
    // Behind the question, alice's center goes on (this tab follows the
    // first one's connection, so it is live before its list has loaded).
    crafted.until(LIVE).await;
    crafted.until(ONE_ITEM).await;
    assert_eq!(crafted.text("#signed-in-as").await, "Signed in as alice");
    assert_eq!(crafted.titles().await, json!(["For alice"]));
    crafted.screenshot("switch-user-question.png").await;

    // Declined: nothing changes, not even after a reload.
    crafted
        .eval("document.querySelector('#switch-keep').click()")
        .await;
    crafted.until(&format!("!{ASKING}")).await;
    for reload in [false, true] {
        if reload {
            crafted.reload_until_live().await;
        }
        crafted.until(ONE_ITEM).await;
        assert_eq!(crafted.eval(ASKING).await, false);
        assert_eq!(crafted.text("#signed-in-as").await, "Signed in as alice");
        assert_eq!(crafted.titles().await, json!(["For alice"]));
        for area in ["sessionStorage", "localStorage"] {
            assert_eq!(
                crafted
                    .eval(&format!("{area}.getItem('herald.token')"))
                    .await,
                alice_token,
                "{area} keeps alice's token"
            );
        }
    }

    // A link whose token the server refuses (a broken signature) replaces
    // nothing and asks nothing, whatever user it names.
    for user in ["mallory", "alice"] {
        crafted
            .eval(&format!(
                "location.hash = '#token={}x'",
                app.token(user, &[])
            ))
            .await;
        crafted
            .until("document.querySelector('#error').textContent === 'The sign-in link holds no valid token; nothing was changed.' && !document.querySelector('#error').hidden")
            .await;
        crafted
            .eval("document.querySelector('#error').hidden = true")
            .await;
        assert_eq!(crafted.eval(ASKING).await, false);
        assert_eq!(crafted.eval("location.href.includes('token')").await, false);
        assert_eq!(crafted.text("#signed-in-as").await, "Signed in as alice");
        assert_eq!(crafted.titles().await, json!(["For alice"]));
        assert_eq!(
            crafted.eval("sessionStorage.getItem('herald.token')").await,
            alice_token
        );
    }

    // The same link again, now followed within the open tab; accepted.
    crafted
        .eval(&format!(
            "location.hash = '#token={}'",
            app.token("mallory", &[])
        ))
        .await;
    crafted.until(ASKING).await;
    assert_eq!(
        crafted.text("#switch-text").await,
        "This link signs you in as mallory. You are signed in as alice."
    );
    assert_eq!(crafted.eval("location.href.includes('token')").await, false);
    crafted
        .eval("document.querySelector('#switch-accept').click()")
        .await;
    crafted
        .until("document.querySelector('#signed-in-as').textContent === 'Signed in as mallory'")
        .await;
    crafted.until(LIVE).await;
    crafted.until(ONE_ITEM).await;
    assert_eq!(crafted.titles().await, json!(["For mallory"]));
    assert_eq!(crafted.eval(ASKING).await, false);
    // The first tab is still alice's: each tab keeps its own user.
    assert_eq!(own.text("#signed-in-as").await, "Signed in as alice");
    assert_eq!(own.titles().await, json!(["For alice"]));
}
