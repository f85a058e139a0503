//! The settings panel: a switch per category, for the categories of the
//! loaded notifications and those the user has set. Turning one off is a
//! preference on the server (publishes in it then skip the user), and every
//! tab follows through the `preferences` event.

use serde_json::{Value, json};

use super::inbox::browser;
use super::{LIVE, Tab, page_url};
use crate::support::TestApp;

/// The panel's categories, in order, each with its switch's state.
const PANEL: &str = "JSON.stringify([...document.querySelectorAll('#preferences li')].map(li => [li.dataset.category, li.querySelector('input').checked, li.querySelector('.pref-state').textContent]))";

/// True in the page when the panel shows exactly `rows` (category, on, text).
fn panel_is(rows: &[(&str, bool, &str)]) -> String {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(c, on, text)| json!([c, on, text]))
        .collect();
    format!("{PANEL} === {}", json!(json!(rows).to_string()))
}

/// The switch of `category` in the panel.
fn switch(category: &str) -> String {
    let selector = format!("#preferences li[data-category={}] input", json!(category));
    format!("document.querySelector({})", json!(selector))
}

async fn preferences(app: &TestApp, user: &str) -> Value {
    let r = app.get_as(user, "/v1/me/preferences").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

impl Tab<'_> {
    async fn open_settings(&self) {
        self.click("document.querySelector('#settings summary')")
            .await;
        self.until("document.querySelector('#settings').open").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_switched_off_in_the_panel_is_skipped_and_every_tab_follows() {
    let app = TestApp::spawn().await;
    let user = "chooser";
    for (title, category) in [("Weekly digest", "news"), ("Invoice 7", "billing")] {
        let r = app
            .post_notification(&json!({"recipients": [user], "title": title, "category": category}))
            .await;
        assert_eq!(r.status(), 201);
    }
    // Set before the page opens, and not among the notifications: listed too.
    let r = app
        .http
        .put(app.url("/v1/me/preferences/categories/marketing"))
        .bearer_auth(app.token(user, &[]))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let browser = browser("preferences").await;
    let one = browser.open(&page_url(&app, user, ""), None).await;
    one.until(LIVE).await;
    one.open_settings().await;
    one.until(&panel_is(&[
        ("billing", true, "On"),
        ("marketing", false, "Off"),
        ("news", true, "On"),
    ]))
    .await;
    assert_eq!(
        one.eval(&format!("{}.getAttribute('role')", switch("news")))
            .await,
        "switch"
    );
    assert_eq!(
        one.eval(&format!("{}.getAttribute('aria-label')", switch("news")))
            .await,
        "Receive notifications in news"
    );
    let two = browser.open(&page_url(&app, user, ""), None).await;
    two.until(LIVE).await;
    two.open_settings().await;
    two.until(&panel_is(&[
        ("billing", true, "On"),
        ("marketing", false, "Off"),
        ("news", true, "On"),
    ]))
    .await;

    // Off in the first tab: the server has it, and the second tab follows.
    one.click(&switch("news")).await;
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    loop {
        let doc = preferences(&app, user).await;
        if doc["categories"]["news"] == json!({"enabled": false}) {
            assert_eq!(
                doc,
                json!({"categories": {"marketing": {"enabled": false}, "news": {"enabled": false}}})
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{doc}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let off = [
        ("billing", true, "On"),
        ("marketing", false, "Off"),
        ("news", false, "Off"),
    ];
    two.until(&panel_is(&off)).await;
    one.until(&panel_is(&off)).await;
    one.caught_up(&app, user).await;
    two.caught_up(&app, user).await;
    let shot = one.screenshot("preferences.png").await;
    eprintln!("screenshot: {}", shot.display());

    // A publish in that category skips the user; a critical one does not.
    let r = app
        .post_notification(
            &json!({"recipients": [user], "title": "Another digest", "category": "news"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["notifications"], json!([]), "{answer}");
    assert_eq!(
        answer["skipped"],
        json!([{"user_id": user, "reason": "preferences"}])
    );
    let r = app
        .post_notification(&json!({"recipients": [user], "title": "Digest recalled", "category": "news", "critical": true}))
        .await;
    assert_eq!(r.status(), 201);
    for tab in [&one, &two] {
        tab.until(
            "document.querySelector('li.notification .title').textContent === 'Digest recalled'",
        )
        .await;
        assert_eq!(
            tab.titles().await,
            json!(["Digest recalled", "Invoice 7", "Weekly digest"])
        );
    }

    // On again from the second tab; then changed elsewhere (an
    // administrator, for another device): both tabs follow each time.
    two.click(&switch("news")).await;
    let on = [
        ("billing", true, "On"),
        ("marketing", false, "Off"),
        ("news", true, "On"),
    ];
    one.until(&panel_is(&on)).await;
    two.until(&panel_is(&on)).await;
    let r = app
        .http
        .put(app.url(&format!(
            "/v1/admin/users/{user}/preferences/categories/billing"
        )))
        .bearer_auth(app.admin())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let billing_off = [
        ("billing", false, "Off"),
        ("marketing", false, "Off"),
        ("news", true, "On"),
    ];
    one.until(&panel_is(&billing_off)).await;
    two.until(&panel_is(&billing_off)).await;
    assert_eq!(
        preferences(&app, user).await,
        json!({"categories": {"billing": {"enabled": false}, "marketing": {"enabled": false}, "news": {"enabled": true}}})
    );

    // A reload shows what the server has.
    two.reload_until_live().await;
    two.open_settings().await;
    two.until(&panel_is(&billing_off)).await;

    // In Chinese, switched in the page.
    two.eval(
        "const s = document.querySelector('#language'); s.value = 'zh-CN'; \
         s.dispatchEvent(new Event('change'))",
    )
    .await;
    two.until(&panel_is(&[
        ("billing", false, "关"),
        ("marketing", false, "关"),
        ("news", true, "开"),
    ]))
    .await;
    assert_eq!(two.text("#settings summary").await, "通知设置");
    assert_eq!(
        two.eval(&format!("{}.getAttribute('aria-label')", switch("news")))
            .await,
        "接收“news”分类的通知"
    );
}
