//! Preferences: the document, the `preferences` event every open
//! connection of the user gets (and replays), and the administrators'
//! routes to the same.

use reqwest::Method;
use serde_json::{Value, json};

use super::{call, expect, last_seq, set_preference};
use crate::support::{TestApp, assert_problem, data, ws};

#[tokio::test]
async fn the_document_lists_exactly_the_categories_the_user_set() {
    let app = TestApp::spawn().await;
    let get = async |user: &str| expect(app.get_as(user, "/v1/me/preferences").await, 200).await;
    assert_eq!(get("p").await, json!({"categories": {}}));
    assert_eq!(
        set_preference(&app, "p", "news", false).await,
        json!({"categories": {"news": {"enabled": false}}})
    );
    assert_eq!(
        set_preference(&app, "p", "promo", true).await,
        json!({"categories": {"news": {"enabled": false}, "promo": {"enabled": true}}})
    );
    assert_eq!(
        set_preference(&app, "p", "news", true).await,
        json!({"categories": {"news": {"enabled": true}, "promo": {"enabled": true}}})
    );
    assert_eq!(
        get("p").await,
        json!({"categories": {"news": {"enabled": true}, "promo": {"enabled": true}}})
    );
    // Another user's document is their own.
    assert_eq!(get("q").await, json!({"categories": {}}));

    let token = app.token("p", &[]);
    let long = "c".repeat(65);
    let r = call(
        &app,
        Method::PUT,
        &format!("/v1/me/preferences/categories/{long}"),
        &token,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_problem(r, 400, "").await;
    for body in [
        json!({"enabled": "no"}),
        json!({}),
        json!({"enabled": false, "x": 1}),
    ] {
        let r = call(
            &app,
            Method::PUT,
            "/v1/me/preferences/categories/news",
            &token,
            Some(&body),
        )
        .await;
        assert_problem(r, 422, "").await;
    }
    // Refused changes change nothing, and emit nothing: three events so far.
    assert_eq!(
        get("p").await,
        json!({"categories": {"news": {"enabled": true}, "promo": {"enabled": true}}})
    );
    assert_eq!(last_seq(&app, "p").await, 3);
}

#[tokio::test]
async fn every_open_connection_gets_the_preferences_event_and_a_resume_replays_it() {
    let app = TestApp::spawn().await;
    app.publish(&["dev"], "unread one").await;
    let mut sse = app.sse("dev", None, None).await;
    let mut socket = ws::connect(&app, &app.token("dev", &[]), None).await;
    let counts = json!({"unread": 1, "unseen": 1});

    let doc = set_preference(&app, "dev", "news", false).await;
    let mut expected = doc.clone();
    expected["counts"] = counts.clone();
    assert_eq!(
        expected,
        json!({"categories": {"news": {"enabled": false}}, "counts": counts})
    );
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("preferences", "2")
    );
    assert_eq!(data(&event), expected);
    assert_eq!(
        ws::next_json(&mut socket).await,
        json!({"seq": 2, "type": "preferences", "data": expected})
    );

    // An administrator's change reaches the user's devices the same way.
    let r = call(
        &app,
        Method::PUT,
        "/v1/admin/users/dev/preferences/categories/promo",
        &app.admin(),
        Some(&json!({"enabled": false})),
    )
    .await;
    let doc = expect(r, 200).await;
    assert_eq!(
        doc,
        json!({"categories": {"news": {"enabled": false}, "promo": {"enabled": false}}})
    );
    let mut second = doc.clone();
    second["counts"] = counts.clone();
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("preferences", "3")
    );
    assert_eq!(data(&event), second);
    assert_eq!(
        ws::next_json(&mut socket).await,
        json!({"seq": 3, "type": "preferences", "data": second})
    );

    // Setting a category to what it already is still tells every device.
    let same = set_preference(&app, "dev", "news", false).await;
    assert_eq!(same, doc);
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("preferences", "4")
    );
    assert_eq!(data(&event), second);

    // A device that was away gets them again, each with its moment's data.
    let mut resumed = app.sse("dev", Some("1"), None).await;
    let replayed: Vec<(String, String, Value)> = resumed
        .take(3)
        .await
        .iter()
        .map(|e| (e.id.clone(), e.event.clone(), data(e)))
        .collect();
    assert_eq!(
        replayed,
        [
            ("2".to_owned(), "preferences".to_owned(), expected.clone()),
            ("3".to_owned(), "preferences".to_owned(), second.clone()),
            ("4".to_owned(), "preferences".to_owned(), second.clone()),
        ]
    );
    let mut socket = ws::connect(&app, &app.token("dev", &[]), Some("1")).await;
    assert_eq!(
        ws::next_json(&mut socket).await,
        json!({"seq": 2, "type": "preferences", "data": expected})
    );
    let polled = expect(app.get_as("dev", "/v1/me/events?after=1").await, 200).await;
    assert_eq!(
        polled,
        json!({"events": [
            {"seq": 2, "type": "preferences", "data": expected},
            {"seq": 3, "type": "preferences", "data": second},
            {"seq": 4, "type": "preferences", "data": second},
        ], "last_seq": 4})
    );
}

#[tokio::test]
async fn administrators_read_and_set_any_users_preferences() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let r = call(
        &app,
        Method::GET,
        "/v1/admin/users/ann/preferences",
        &admin,
        None,
    )
    .await;
    assert_eq!(expect(r, 200).await, json!({"categories": {}}));
    let r = call(
        &app,
        Method::PUT,
        "/v1/admin/users/ann/preferences/categories/billing",
        &admin,
        Some(&json!({"enabled": false})),
    )
    .await;
    let doc = json!({"categories": {"billing": {"enabled": false}}});
    assert_eq!(expect(r, 200).await, doc);
    let r = call(
        &app,
        Method::GET,
        "/v1/admin/users/ann/preferences",
        &admin,
        None,
    )
    .await;
    assert_eq!(expect(r, 200).await, doc);
    assert_eq!(
        expect(app.get_as("ann", "/v1/me/preferences").await, 200).await,
        doc
    );
    // It is an event of Ann's log like her own change would be.
    assert_eq!(last_seq(&app, "ann").await, 1);
    // And it applies: Ann no longer gets billing notifications.
    let answer = expect(
        app.post_notification(
            &json!({"recipients": ["ann"], "title": "bill", "category": "billing"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        answer,
        json!({"notifications": [], "skipped": [{"user_id": "ann", "reason": "preferences"}]})
    );

    // Publishers and users may not use these routes.
    for token in [app.publisher(), app.token("ann", &[])] {
        let r = call(
            &app,
            Method::GET,
            "/v1/admin/users/ann/preferences",
            &token,
            None,
        )
        .await;
        assert_problem(r, 403, "").await;
        let r = call(
            &app,
            Method::PUT,
            "/v1/admin/users/ann/preferences/categories/billing",
            &token,
            Some(&json!({"enabled": true})),
        )
        .await;
        assert_problem(r, 403, "").await;
    }
    let long = "u".repeat(129);
    let r = call(
        &app,
        Method::GET,
        &format!("/v1/admin/users/{long}/preferences"),
        &admin,
        None,
    )
    .await;
    assert_problem(r, 400, "user_id").await;
    assert_eq!(
        expect(app.get_as("ann", "/v1/me/preferences").await, 200).await,
        doc
    );
    assert_eq!(last_seq(&app, "ann").await, 1);
}

/// Every event of the user's log, in seq order, through long-polling.
async fn whole_log(app: &TestApp, user: &str) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        let page = expect(
            app.get_as(user, &format!("/v1/me/events?after={after}"))
                .await,
            200,
        )
        .await;
        let got = page["events"].as_array().unwrap();
        if got.is_empty() {
            assert_eq!(page["last_seq"], after);
            return events;
        }
        events.extend(got.iter().cloned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_obeys_the_preferences_event_before_it_in_the_log() {
    const TOGGLES: usize = 40;
    const PUBLISHES: usize = 150;
    let app = TestApp::spawn().await;
    let toggler = {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/me/preferences/categories/news"),
            app.token("fickle", &[]),
        );
        tokio::spawn(async move {
            for i in 0..TOGGLES {
                let r = http
                    .put(&url)
                    .bearer_auth(&token)
                    .json(&json!({"enabled": i % 2 == 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
    };
    let mut publishers = Vec::new();
    for p in 0..2 {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/notifications"),
            app.publisher(),
        );
        publishers.push(tokio::spawn(async move {
            let (mut delivered, mut skipped) = (0, 0);
            for i in 0..PUBLISHES / 2 {
                let answer: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(
                        &json!({"recipients": ["fickle"], "title": format!("p{p}-{i}"),
                                  "category": "news"}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                delivered += answer["notifications"].as_array().unwrap().len();
                skipped += answer["skipped"].as_array().unwrap().len();
            }
            (delivered, skipped)
        }));
    }
    toggler.await.unwrap();
    let (mut delivered, mut skipped) = (0, 0);
    for p in publishers {
        let (d, s) = p.await.unwrap();
        delivered += d;
        skipped += s;
    }
    assert_eq!(delivered + skipped, PUBLISHES);

    // Walking the log in seq order, every `news` notification comes while
    // the latest `preferences` event before it has news enabled (or before
    // the first one).
    let log = whole_log(&app, "fickle").await;
    let mut enabled = true;
    let (mut notifications, mut toggles) = (0, 0);
    for event in &log {
        match event["type"].as_str().unwrap() {
            "preferences" => {
                toggles += 1;
                enabled = event["data"]["categories"]["news"]["enabled"]
                    .as_bool()
                    .unwrap();
            }
            "notification" => {
                notifications += 1;
                assert!(enabled, "delivered while news was off: {event}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((notifications, toggles), (delivered, TOGGLES));
    eprintln!("preferences race: {delivered} delivered, {skipped} skipped");
}
