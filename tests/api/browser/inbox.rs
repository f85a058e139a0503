//! The inbox of contract v2 in the page: the bell's unseen badge, the
//! Archived tab, the notification's own actions, snoozing, and updates in
//! place by key.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Browser, LIVE, ONE_ITEM, Tab, page_url};
use crate::support::{TestApp, scratch_dir, wait_for};

/// English, whatever the machine's locale: the tests read the page's texts.
pub(super) async fn browser(name: &str) -> Browser {
    Browser::launch_with(name, &["--accept-lang=en-US,en"]).await
}

async fn post_json(app: &TestApp, user: &str, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(app.token(user, &[]))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `GET /v1/me/counts` of `user`.
async fn counts(app: &TestApp, user: &str) -> Value {
    let r = app.get_as(user, "/v1/me/counts").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Publishes `body` (recipients and all) and returns the answer's one item.
async fn publish(app: &TestApp, body: &Value) -> Value {
    let r = app.post_notification(body).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let answer: Value = r.json().await.unwrap();
    answer["notifications"][0].clone()
}

/// True in the page when the list shows exactly `titles`, in this order.
fn titles_are(titles: &[&str]) -> String {
    format!(
        "JSON.stringify([...document.querySelectorAll('li.notification .title')].map(e => e.textContent)) === {}",
        json!(json!(titles).to_string())
    )
}

/// A JavaScript expression for the element matching `selector` inside the
/// item titled `title`.
fn in_item(title: &str, selector: &str) -> String {
    format!(
        "[...document.querySelectorAll('li.notification')].find(li => li.querySelector('.title').textContent === {})?.querySelector({})",
        json!(title),
        json!(selector)
    )
}

impl Tab<'_> {
    pub(super) async fn click(&self, element: &str) {
        assert_eq!(
            self.eval(&format!(
                "(e => {{ if (!e) return false; e.click(); return true; }})({element})"
            ))
            .await,
            json!(true),
            "nothing to click: {element}"
        );
    }

    async fn unseen_badge(&self) -> Value {
        self.text("#unseen-count").await
    }
}

/// A non-empty PNG file.
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 1000,
        "{} is too small for a screenshot",
        path.display()
    );
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unseen_badge_counts_live_notifications_and_clears_when_the_list_is_opened() {
    let app = TestApp::spawn().await;
    let user = "watcher";
    app.publish(&[user], "Before the page").await;
    let browser = browser("unseen").await;
    let tab = browser.open(&page_url(&app, user, ""), None).await;
    tab.until(LIVE).await;
    tab.until(ONE_ITEM).await;
    // The list is open from the start: what it shows is seen at once.
    assert_eq!(
        tab.eval("document.querySelector('#bell').getAttribute('aria-expanded')")
            .await,
        "true"
    );
    tab.until("document.querySelector('#unseen-count').textContent === '0'")
        .await;
    assert_eq!(counts(&app, user).await["unseen"], 0);

    // Closed, the bell counts what arrives, from the events' counts.
    tab.click("document.querySelector('#bell')").await;
    assert_eq!(
        tab.eval("document.querySelector('#center').hidden").await,
        true
    );
    assert_eq!(
        tab.eval("document.querySelector('#bell').getAttribute('aria-expanded')")
            .await,
        "false"
    );
    app.publish(&[user], "First while closed").await;
    tab.until("document.querySelector('#unseen-count').textContent === '1'")
        .await;
    let second = app.publish(&[user], "Second while closed").await;
    tab.until("document.querySelector('#unseen-count').textContent === '2'")
        .await;
    assert_eq!(
        tab.eval("document.querySelector('#bell').getAttribute('aria-label')")
            .await,
        "Notifications, 2 new"
    );
    assert_eq!(
        tab.eval("document.querySelector('#unseen-count').classList.contains('zero')")
            .await,
        false
    );
    // Nothing was marked seen behind the closed list.
    let before = counts(&app, user).await;
    assert_eq!(before["unseen"], 2, "{before}");
    assert_eq!(before["unread"], 3, "{before}");

    // Opened: the page marks seen what it has, and the badge follows the
    // `seen_all` event's counts.
    tab.click("document.querySelector('#bell')").await;
    assert_eq!(
        tab.eval("document.querySelector('#center').hidden").await,
        false
    );
    tab.until("document.querySelector('#unseen-count').textContent === '0'")
        .await;
    let after = counts(&app, user).await;
    assert_eq!(after["unseen"], 0, "{after}");
    assert_eq!(after["unread"], 3, "seeing is not reading: {after}");
    assert_eq!(tab.unseen_badge().await, "0");
    assert_eq!(tab.text("#unread-count").await, "3");
    // It asked for exactly what it had: everything up to the last
    // notification it received, in every category.
    let r = app.get_as(user, "/v1/me/events?after=0").await;
    let log: Value = r.json().await.unwrap();
    let seen_all: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "seen_all")
        .collect();
    let last = seen_all.last().expect("a seen_all event");
    assert_eq!(last["data"]["up_to_seq"], second[0]["seq"], "{last}");
    assert_eq!(last["data"]["category"], Value::Null, "{last}");
    tab.caught_up(&app, user).await;
    assert_eq!(tab.unseen_badge().await, "0");

    // Another tab in front hides this one: what arrives is not seen until
    // it is in front again.
    browser.open("about:blank", None).await;
    tab.until("document.visibilityState === 'hidden'").await;
    app.publish(&[user], "While hidden").await;
    tab.until("document.querySelector('#unseen-count').textContent === '1'")
        .await;
    assert_eq!(counts(&app, user).await["unseen"], 1);
    tab.call("Page.bringToFront", json!({})).await;
    tab.until("document.visibilityState === 'visible'").await;
    tab.until("document.querySelector('#unseen-count').textContent === '0'")
        .await;
    assert_eq!(counts(&app, user).await["unseen"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_moves_a_notification_to_the_archived_tab_and_back() {
    let app = TestApp::spawn().await;
    let user = "archivist";
    let keep = app.publish(&[user], "Keep me").await[0]["id"].clone();
    app.publish(&[user], "Archive me").await;
    let browser = browser("archive").await;
    let tab = browser.open(&page_url(&app, user, ""), None).await;
    tab.until(LIVE).await;
    tab.until(&titles_are(&["Archive me", "Keep me"])).await;
    assert_eq!(
        tab.eval(&format!(
            "{}.getAttribute('aria-label')",
            in_item("Archive me", ".archive-toggle")
        ))
        .await,
        "Archive: Archive me"
    );

    tab.click(&in_item("Archive me", ".archive-toggle")).await;
    tab.until(&titles_are(&["Keep me"])).await;
    // The page shows a change at once; the server has it a moment later.
    wait_for(|| async {
        app.list(user, "?status=archived").await["items"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    })
    .await;
    let archived = app.list(user, "?status=archived").await;
    assert_eq!(archived["items"].as_array().unwrap().len(), 1, "{archived}");
    assert_eq!(archived["items"][0]["title"], "Archive me");

    // The Archived tab lists it, with the way back.
    tab.click("document.querySelector('#tab-archived')").await;
    tab.until(&titles_are(&["Archive me"])).await;
    assert_eq!(
        tab.eval("document.querySelector('#tab-archived').getAttribute('aria-selected')")
            .await,
        "true"
    );
    assert_eq!(
        tab.eval(&format!(
            "{}.textContent",
            in_item("Archive me", ".archive-toggle")
        ))
        .await,
        "Move to inbox"
    );
    // Archived elsewhere while this tab shows the archive: it appears here live.
    let r = app
        .post_as(
            user,
            &format!("/v1/me/notifications/{}/archive", keep.as_str().unwrap()),
        )
        .await;
    assert_eq!(r.status(), 200);
    tab.until(&titles_are(&["Archive me", "Keep me"])).await;
    let dir = scratch_dir("inbox-screens-archive");
    assert_png(&tab.screenshot_into(&dir, "archived-tab.png").await);

    // Unarchived: it leaves the archive and is back in the inbox, in its place.
    tab.click(&in_item("Archive me", ".archive-toggle")).await;
    tab.until(&titles_are(&["Keep me"])).await;
    tab.click("document.querySelector('#tab-inbox')").await;
    tab.until(&titles_are(&["Archive me"])).await;
    let r = app
        .post_as(
            user,
            &format!("/v1/me/notifications/{}/unarchive", keep.as_str().unwrap()),
        )
        .await;
    assert_eq!(r.status(), 200);
    tab.until(&titles_are(&["Archive me", "Keep me"])).await;
    assert_eq!(app.list(user, "?status=archived").await["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_button_takes_the_action_and_shows_its_outcome() {
    let app = TestApp::spawn().await;
    let user = "approver";
    let item = publish(
        &app,
        &json!({
            "recipients": [user],
            "title": "Deploy v2 to production?",
            "body": "Requested by the release bot",
            "actions": [
                {"id": "approve", "label": "Approve"},
                {"id": "reject", "label": "Reject"},
                {"id": "open", "label": "Open the release", "url": "https://example.com/releases/2"}
            ]
        }),
    )
    .await;
    let id = item["id"].as_str().unwrap().to_owned();
    let browser = browser("actions").await;
    let tab = browser.open(&page_url(&app, user, ""), None).await;
    tab.until(LIVE).await;
    tab.until(ONE_ITEM).await;
    assert_eq!(
        tab.texts("li.notification .cta button.cta-button").await,
        json!(["Approve", "Reject"])
    );
    // A URL makes a link that opens in a new tab, without a handle on this page.
    let link = tab
        .eval(
            "(a => a && {href: a.getAttribute('href'), target: a.target, rel: a.rel, text: a.textContent})\
             (document.querySelector('li.notification .cta a'))",
        )
        .await;
    assert_eq!(link["href"], "https://example.com/releases/2", "{link}");
    assert_eq!(link["target"], "_blank", "{link}");
    assert!(
        link["rel"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|r| r == "noopener"),
        "{link}"
    );
    assert_eq!(
        link["text"], "Open the release (opens in a new tab)",
        "{link}"
    );
    // Seen, so the bell is quiet in the picture.
    tab.until("document.querySelector('#unseen-count').textContent === '0'")
        .await;
    let dir = scratch_dir("inbox-screens-actions");
    assert_png(&tab.screenshot_into(&dir, "inbox-with-actions.png").await);

    tab.click(&in_item(
        "Deploy v2 to production?",
        "button.cta-button[data-action='approve']",
    ))
    .await;
    tab.until("document.querySelector('li.notification .outcome')?.textContent === '✓ Approve'")
        .await;
    assert_eq!(
        tab.eval("document.querySelectorAll('li.notification .cta-button').length")
            .await,
        0,
        "no action is offered once one is taken"
    );
    // Shown at once; the server has it a moment later.
    wait_for(|| async {
        let r = app
            .get_as(user, &format!("/v1/me/notifications/{id}"))
            .await;
        r.json::<Value>().await.unwrap()["action_taken"] != Value::Null
    })
    .await;
    let r = app
        .get_as(user, &format!("/v1/me/notifications/{id}"))
        .await;
    assert_eq!(r.status(), 200);
    let n: Value = r.json().await.unwrap();
    assert_eq!(n["action_taken"]["id"], "approve", "{n}");
    assert!(n["read_at"].is_string(), "taking an action reads it: {n}");
    // Read by the action: the badge says so, from the event's counts.
    tab.until("document.querySelector('#unread-count').textContent === '0'")
        .await;
    assert!(
        !tab.eval("document.querySelector('li.notification').classList.contains('unread')")
            .await
            .as_bool()
            .unwrap()
    );
    // The outcome outlives a reload (it comes from the server's action_taken).
    tab.reload_until_live().await;
    tab.until("document.querySelector('li.notification .outcome')?.textContent === '✓ Approve'")
        .await;
    assert_eq!(
        tab.eval("document.querySelectorAll('li.notification .cta-button').length")
            .await,
        0
    );
}

/// The server refuses an action URL that is not http(s) (422), so the page
/// never gets one from it; the page checks anyway. Here a follower tab is
/// handed, on the channel its tabs share, an `updated` event whose actions
/// carry such URLs: none of them becomes a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_http_urls_become_links_whatever_reaches_the_page() {
    let app = TestApp::spawn().await;
    let user = "guarded";
    let r = app
        .post_notification(&json!({
            "recipients": [user],
            "title": "Refused",
            "actions": [{"id": "x", "label": "Run", "url": "javascript:alert(1)"}]
        }))
        .await;
    assert_eq!(r.status(), 422, "the server refuses a javascript: URL");
    let item = publish(
        &app,
        &json!({
            "recipients": [user],
            "title": "Choose",
            "actions": [{"id": "ok", "label": "Fine", "url": "https://example.com/ok"}]
        }),
    )
    .await;
    let n: Value = app
        .get_as(
            user,
            &format!("/v1/me/notifications/{}", item["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();

    let browser = browser("guard").await;
    let leader = browser.open(&page_url(&app, user, ""), None).await;
    leader.until(LIVE).await;
    let follower = browser.open(&page_url(&app, user, ""), None).await;
    follower.until(LIVE).await;
    follower.until(ONE_ITEM).await;
    assert_eq!(
        follower
            .eval("document.querySelector('li.notification .cta a').getAttribute('href')")
            .await,
        "https://example.com/ok"
    );

    let mut updated = n.clone();
    updated["title"] = json!("Choose again");
    updated["actions"] = json!([
        {"id": "script", "label": "Script", "url": "javascript:alert(document.domain)"},
        {"id": "data", "label": "Data", "url": "data:text/html,<script>alert(1)</script>"},
        {"id": "relative", "label": "Relative", "url": "/v1/me/notifications"},
        {"id": "fine", "label": "Fine", "url": "https://example.com/ok"}
    ]);
    updated["counts"] = json!({"unread": 1, "unseen": 0});
    follower
        .eval(&format!(
            "const ev = {{seq: Number(document.body.dataset.lastSeq) + 1, type: 'updated', data: {updated}}};\
             const channel = new BroadcastChannel({}); channel.postMessage({{e: ev}}); channel.close(); true",
            // The channel the client's tabs share (herald-client's relay).
            json!(format!("herald:{}:{user}", app.address))
        ))
        .await;
    follower.until(&titles_are(&["Choose again"])).await;
    assert_eq!(
        follower.texts("li.notification .cta button").await,
        json!(["Script", "Data", "Relative"]),
        "not http(s): a button at most"
    );
    assert_eq!(
        follower
            .eval("[...document.querySelectorAll('li.notification [href]')].map(e => e.getAttribute('href'))")
            .await,
        json!(["https://example.com/ok"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozed_notification_leaves_the_inbox_and_comes_back_when_it_wakes() {
    let app = TestApp::spawn().await;
    let user = "sleeper";
    let later = app.publish(&[user], "Later").await[0]["id"].clone();
    let now = app.publish(&[user], "Now").await[0]["id"].clone();
    let browser = browser("snooze").await;
    let tab = browser.open(&page_url(&app, user, ""), None).await;
    tab.until(LIVE).await;
    tab.until(&titles_are(&["Now", "Later"])).await;

    // The menu of one item: its choices, then one of them.
    tab.click(&in_item("Later", "summary.snooze-button")).await;
    assert_eq!(
        tab.eval(&format!("{}.open", in_item("Later", "details.snooze")))
            .await,
        true
    );
    assert_eq!(
        tab.eval(&format!(
            // Intl may put a narrow no-break space before AM.
            "[...{}.querySelectorAll('.snooze-option')].map(b => b.textContent.replace(/\\s/g, ' '))",
            in_item("Later", ".snooze-menu")
        ))
        .await,
        json!(["For 1 hour", "Tomorrow, 9:00 AM", "Next Monday, 9:00 AM"])
    );
    let asked = chrono::Utc::now();
    tab.click(&in_item("Later", ".snooze-option[data-snooze='hour']"))
        .await;
    tab.until(&titles_are(&["Now"])).await;
    // Shown at once; the server has it a moment later.
    wait_for(|| async { app.list(user, "?status=snoozed").await["items"][0]["id"] == later }).await;
    let snoozed = app.list(user, "?status=snoozed").await;
    assert_eq!(snoozed["items"][0]["id"], later, "{snoozed}");
    let until: chrono::DateTime<chrono::Utc> = snoozed["items"][0]["snoozed_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ahead = until - asked;
    assert!(
        ahead > chrono::Duration::minutes(59) && ahead < chrono::Duration::minutes(61),
        "snoozed for {ahead}"
    );

    // Snoozed for a few seconds elsewhere: gone, then back by itself when the
    // server wakes it (within 5 s of `until`), in its place.
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = post_json(
        &app,
        user,
        &format!("/v1/me/notifications/{}/snooze", now.as_str().unwrap()),
        &json!({"until": until.to_rfc3339()}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    tab.until(&titles_are(&[])).await;
    assert_eq!(
        tab.eval("document.querySelector('#empty').hidden").await,
        false
    );
    tab.until_within(&titles_are(&["Now"]), Duration::from_secs(20))
        .await;
    // The one snoozed for an hour comes back when unsnoozed, below the newer one.
    let r = app
        .post_as(
            user,
            &format!("/v1/me/notifications/{}/unsnooze", later.as_str().unwrap()),
        )
        .await;
    assert_eq!(r.status(), 200);
    tab.until(&titles_are(&["Now", "Later"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_again_with_the_same_key_updates_the_item_in_place() {
    let app = TestApp::spawn().await;
    let user = "builder";
    let first = publish(
        &app,
        &json!({"recipients": [user], "title": "Build 42 is running", "key": "build-42"}),
    )
    .await;
    app.publish(&[user], "Unrelated").await;
    let browser = browser("update").await;
    let tab = browser.open(&page_url(&app, user, ""), None).await;
    tab.until(LIVE).await;
    tab.until(&titles_are(&["Unrelated", "Build 42 is running"]))
        .await;
    let again = publish(
        &app,
        &json!({"recipients": [user], "title": "Build 42 passed", "body": "All 311 tests green", "key": "build-42"}),
    )
    .await;
    assert_eq!(again["id"], first["id"], "{again}");
    assert_eq!(again["updated"], true, "{again}");

    tab.until(&titles_are(&["Unrelated", "Build 42 passed"]))
        .await;
    assert_eq!(
        tab.eval("document.querySelectorAll('li.notification').length")
            .await,
        2
    );
    let second = tab
        .eval(
            "(li => ({id: li.dataset.id, seq: li.dataset.seq, body: li.querySelector('.body')?.textContent}))\
             (document.querySelectorAll('li.notification')[1])",
        )
        .await;
    assert_eq!(second["id"], first["id"], "{second}");
    assert_eq!(second["seq"], first["seq"].to_string(), "{second}");
    assert_eq!(second["body"], "All 311 tests green", "{second}");
    assert_eq!(
        tab.text("#announce").await,
        "Updated notification: Build 42 passed"
    );
    // A reload shows the same.
    tab.reload_until_live().await;
    tab.until(&titles_are(&["Unrelated", "Build 42 passed"]))
        .await;
}

/// The same v2 events over each transport the page has: every one of them
/// leaves the list and both badges as the server has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_keeps_the_inbox_current() {
    let app = TestApp::spawn().await;
    for transport in ["sse", "ws", "poll"] {
        let user = format!("over-{transport}");
        let keyed = publish(
            &app,
            &json!({"recipients": [user], "title": "Draft", "key": "doc-1",
                    "actions": [{"id": "ok", "label": "OK"}]}),
        )
        .await;
        let other = app.publish(&[&user], "Second").await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // One browser each: one browser's tabs share the leader's connection.
        let browser = browser(&format!("transport-{transport}")).await;
        let tab = browser
            .open(
                &page_url(&app, &user, &format!("?transport={transport}")),
                None,
            )
            .await;
        tab.until(LIVE).await;
        assert_eq!(tab.eval("document.body.dataset.transport").await, transport);
        tab.until(&titles_are(&["Second", "Draft"])).await;
        // Seen when the open list loaded; then closed, so what arrives
        // stays unseen.
        tab.until("document.querySelector('#unseen-count').textContent === '0'")
            .await;
        tab.click("document.querySelector('#bell')").await;

        publish(
            &app,
            &json!({"recipients": [user], "title": "Final", "key": "doc-1",
                    "actions": [{"id": "ok", "label": "OK"}]}),
        )
        .await;
        tab.until(&titles_are(&["Second", "Final"])).await;
        let path = |op: &str| format!("/v1/me/notifications/{other}/{op}");
        assert_eq!(app.post_as(&user, &path("archive")).await.status(), 200);
        tab.until(&titles_are(&["Final"])).await;
        assert_eq!(app.post_as(&user, &path("unarchive")).await.status(), 200);
        tab.until(&titles_are(&["Second", "Final"])).await;
        let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let r = post_json(&app, &user, &path("snooze"), &json!({ "until": until })).await;
        assert_eq!(r.status(), 200);
        tab.until(&titles_are(&["Final"])).await;
        assert_eq!(app.post_as(&user, &path("unsnooze")).await.status(), 200);
        tab.until(&titles_are(&["Second", "Final"])).await;
        let r = app
            .post_as(
                &user,
                &format!(
                    "/v1/me/notifications/{}/actions/ok",
                    keyed["id"].as_str().unwrap()
                ),
            )
            .await;
        assert_eq!(r.status(), 200);
        tab.until("document.querySelector('li.notification .outcome')?.textContent === '✓ OK'")
            .await;
        app.publish(&[&user], "Third").await;
        tab.until(&titles_are(&["Third", "Second", "Final"])).await;

        tab.caught_up(&app, &user).await;
        let c = counts(&app, &user).await;
        assert_eq!(
            tab.text("#unread-count").await,
            c["unread"].to_string(),
            "{c}"
        );
        assert_eq!(tab.unseen_badge().await, c["unseen"].to_string(), "{c}");
        assert_eq!(c["unseen"], 1, "only Third: {c}");
        assert_eq!(
            c["unread"], 2,
            "Second and Third (the action read Final): {c}"
        );
    }
}
