//! Bad input is a problem+json 422 and changes nothing: not the log, not
//! the counts, not the lists, not a row. A second action is 409 and an
//! unknown id 404 on every new route, also changing nothing.

use chrono::Utc;
use serde_json::{Value, json};

use super::{Me, Publisher};
use crate::support::{TestApp, assert_problem};

/// Everything a failed request must leave as it was.
async fn snapshot(
    app: &TestApp,
    me: &Me,
) -> (
    Value,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    (i64, i64, i64, i64),
) {
    (
        me.counts().await,
        me.ids("status=all").await,
        me.ids("status=archived").await,
        me.ids("status=snoozed").await,
        app.row_counts().await,
    )
}

fn action(id: &str) -> Value {
    json!({"id": id, "label": format!("Do {id}"), "url": "https://example.com/do"})
}

#[tokio::test]
async fn invalid_publishes_and_operations_are_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "val");
    let id = publisher
        .one(
            "val",
            "target",
            json!({"category": "c", "key": "kept", "actions": [action("ok")]}),
        )
        .await;
    publisher.one("val", "other", json!({})).await;
    assert_eq!(me.op(&id, "archive").await.status(), 200);
    let before = snapshot(&app, &me).await;
    let last_seq = before.0["last_seq"].as_i64().unwrap();
    let log = me.events_after(0).await;

    let publish = |extra: Value| {
        let mut body = json!({"recipients": ["val", "newcomer"], "title": "bad"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let bad_publishes = [
        (
            "four actions",
            publish(json!({"actions": [action("a"), action("b"), action("c"), action("d")]})),
        ),
        (
            "duplicate action ids",
            publish(json!({"actions": [action("a"), action("a")]})),
        ),
        (
            "a javascript: url",
            publish(json!({"actions": [{"id": "a", "label": "A", "url": "javascript:alert(1)"}]})),
        ),
        (
            "a relative url",
            publish(json!({"actions": [{"id": "a", "label": "A", "url": "/relative/path"}]})),
        ),
        (
            "a url of another scheme",
            publish(json!({"actions": [{"id": "a", "label": "A", "url": "ftp://example.com/x"}]})),
        ),
        (
            "an action id with a space",
            publish(json!({"actions": [{"id": "a b", "label": "A"}]})),
        ),
        (
            "an empty action id",
            publish(json!({"actions": [{"id": "", "label": "A"}]})),
        ),
        (
            "an action id of 65 chars",
            publish(json!({"actions": [{"id": "a".repeat(65), "label": "A"}]})),
        ),
        (
            "an empty label",
            publish(json!({"actions": [{"id": "a", "label": ""}]})),
        ),
        (
            "a label of 65 chars",
            publish(json!({"actions": [{"id": "a", "label": "l".repeat(65)}]})),
        ),
        (
            "a url over 2048 bytes",
            publish(
                json!({"actions": [{"id": "a", "label": "A", "url": format!("https://example.com/{}", "p".repeat(2048))}]}),
            ),
        ),
        ("renotify without key", publish(json!({"renotify": true}))),
        (
            "a key of 129 chars",
            publish(json!({"key": "k".repeat(129)})),
        ),
        ("an empty key", publish(json!({"key": ""}))),
        // Even when it names a key the user has: nothing is updated.
        (
            "a key with four actions",
            publish(
                json!({"key": "kept", "actions": [action("a"), action("b"), action("c"), action("d")]}),
            ),
        ),
    ];
    for (what, body) in &bad_publishes {
        let r = publisher.send(body).await;
        assert_eq!(r.status(), 422, "{what}");
        assert_problem(r, 422, "").await;
        assert_eq!(
            snapshot(&app, &me).await,
            before,
            "{what} changed something"
        );
    }

    let snooze = |until: chrono::DateTime<Utc>| json!({"until": super::rfc3339(until)});
    let path = |op: &str| format!("/v1/me/notifications/{id}/{op}");
    let mut bad_operations = vec![
        (
            "snooze in the past",
            path("snooze"),
            snooze(Utc::now() - chrono::Duration::minutes(1)),
        ),
        (
            "snooze more than 30 days ahead",
            path("snooze"),
            snooze(Utc::now() + chrono::Duration::days(30) + chrono::Duration::minutes(5)),
        ),
    ];
    for bulk in ["read-all", "seen-all", "archive-all", "delete-all"] {
        let route = format!("/v1/me/notifications/{bulk}");
        bad_operations.push((
            "up_to_seq above the current seq",
            route.clone(),
            json!({"up_to_seq": last_seq + 1}),
        ));
        bad_operations.push((
            "up_to_seq above the current seq, with a category",
            route,
            json!({"up_to_seq": last_seq + 100, "category": "c"}),
        ));
    }
    for (what, route, body) in &bad_operations {
        let r = me.post(route, Some(body)).await;
        assert_eq!(r.status(), 422, "{what}: {route}");
        assert_problem(r, 422, "").await;
        assert_eq!(
            snapshot(&app, &me).await,
            before,
            "{what}: {route} changed something"
        );
    }
    assert_eq!(me.events_after(0).await, log, "the log is unchanged");
    assert_eq!(me.counts().await["last_seq"], last_seq);
}

#[tokio::test]
async fn a_second_action_is_409_and_unknown_ids_are_404_on_every_new_route() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "val");
    let id = publisher
        .one(
            "val",
            "target",
            json!({"actions": [action("ok"), action("no")]}),
        )
        .await;
    assert_eq!(me.act(&id, "ok").await.status(), 200);
    let theirs = publisher
        .one(
            "someone-else",
            "not yours",
            json!({"actions": [action("ok")]}),
        )
        .await;
    let before = snapshot(&app, &me).await;
    for second in ["ok", "no"] {
        assert_problem(me.act(&id, second).await, 409, "").await;
        assert_eq!(snapshot(&app, &me).await, before);
    }

    let unknown = "00000000-0000-7000-8000-00000000beef".to_owned();
    let until = json!({"until": super::rfc3339(Utc::now() + chrono::Duration::days(1))});
    for missing in [&unknown, &theirs] {
        for (op, body) in [
            ("seen", None),
            ("archive", None),
            ("unarchive", None),
            ("snooze", Some(&until)),
            ("unsnooze", None),
            ("actions/ok", None),
        ] {
            let r = me
                .post(&format!("/v1/me/notifications/{missing}/{op}"), body)
                .await;
            assert_problem(r, 404, "").await;
            assert_eq!(snapshot(&app, &me).await, before, "{op} of {missing}");
        }
    }
    // The other user's notification is untouched.
    let got: Value = Me::of(&app, "someone-else")
        .notification(&theirs)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            got["seen_at"].clone(),
            got["archived_at"].clone(),
            got["action_taken"].clone()
        ),
        (Value::Null, Value::Null, Value::Null)
    );
}

/// Like every other body: not JSON at all is 400; JSON of the wrong shape
/// is 422 (as for a publish).
#[tokio::test]
async fn malformed_bodies_of_the_new_routes_are_400_or_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "val");
    let id = publisher.one("val", "target", json!({})).await;
    let before = snapshot(&app, &me).await;
    let routes = [
        format!("/v1/me/notifications/{id}/snooze"),
        "/v1/me/notifications/read-all".to_owned(),
        "/v1/me/notifications/seen-all".to_owned(),
        "/v1/me/notifications/archive-all".to_owned(),
        "/v1/me/notifications/delete-all".to_owned(),
    ];
    for route in &routes {
        for (body, status) in [
            ("not json", 400),
            ("{", 400),
            ("[1, 2]", 422),
            ("{\"up_to_seq\": \"three\"}", 422),
        ] {
            let r = app
                .http
                .post(app.url(route))
                .bearer_auth(app.token("val", &[]))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{route} with {body}");
            assert_problem(r, status, "").await;
            assert_eq!(snapshot(&app, &me).await, before, "{route} with {body}");
        }
    }
    for (route, body) in [
        // A snooze needs its `until`, a date-time.
        (&routes[0], json!({})),
        (&routes[0], json!({"until": "tomorrow"})),
        // A negative up_to_seq is no seq at all.
        (&routes[1], json!({"up_to_seq": -1})),
    ] {
        let r = me.post(route, Some(&body)).await;
        assert_eq!(r.status(), 422, "{route} with {body}");
        assert_problem(r, 422, "").await;
        assert_eq!(snapshot(&app, &me).await, before, "{route} with {body}");
    }
}
