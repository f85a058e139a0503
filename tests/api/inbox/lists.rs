//! The list filters of v2 and `GET /v1/me/counts`: unread/read/unseen/all
//! leave archived and snoozed notifications out, `archived` lists the
//! archived ones (snoozed or not), `snoozed` the snoozed ones that are not
//! archived; the list totals are the user's whatever the filter.

use chrono::Utc;
use serde_json::json;

use super::{Me, Publisher, without_last_seq};
use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn status_filters_and_totals_follow_the_decisions() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "lister");
    let mut n = Vec::new();
    for i in 1..=7 {
        let extra = if i == 7 {
            json!({"category": "x"})
        } else {
            json!({})
        };
        n.push(publisher.one("lister", &format!("n{i}"), extra).await);
    }
    let later = Utc::now() + chrono::Duration::days(1);
    // n1 stays unread and unseen, n2 read (so seen), n3 seen only, n4
    // archived, n5 snoozed, n6 archived and snoozed, n7 in category x.
    assert_eq!(me.op(&n[1], "read").await.status(), 200);
    assert_eq!(me.op(&n[2], "seen").await.status(), 200);
    assert_eq!(me.op(&n[3], "archive").await.status(), 200);
    assert_eq!(me.snooze(&n[4], later).await.status(), 200);
    assert_eq!(me.snooze(&n[5], later).await.status(), 200);
    assert_eq!(me.op(&n[5], "archive").await.status(), 200);
    let ids =
        |picked: &[usize]| -> Vec<String> { picked.iter().map(|&i| n[i - 1].clone()).collect() };

    for (query, expected) in [
        ("status=all", ids(&[7, 3, 2, 1])),
        ("", ids(&[7, 3, 2, 1])),
        ("status=unread", ids(&[7, 3, 1])),
        ("status=read", ids(&[2])),
        ("status=unseen", ids(&[7, 1])),
        ("status=archived", ids(&[6, 4])),
        ("status=snoozed", ids(&[5])),
        ("status=unseen&category=x", ids(&[7])),
        ("status=archived&category=x", ids(&[])),
    ] {
        let (items, first) = me.list_all(query).await;
        let got: Vec<String> = items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, expected, "{query}");
        assert_eq!(
            (
                first["unread_count"].as_i64(),
                first["unseen_count"].as_i64(),
                first["last_seq"].as_i64()
            ),
            (Some(3), Some(2), Some(13)),
            "{query}: totals whatever the filter"
        );
    }
    // Paging through a filtered list.
    let r = me.get("/v1/me/notifications?status=archived&limit=1").await;
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            page["items"][0]["id"].as_str(),
            page["next_before"].as_i64()
        ),
        (Some(n[5].as_str()), Some(6))
    );
    let r = me
        .get("/v1/me/notifications?status=archived&limit=1&before=6")
        .await;
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["items"][0]["id"], n[3].as_str());

    assert_eq!(
        without_last_seq(&me.counts().await),
        json!({"unread": 3, "unseen": 2, "total": 4, "archived": 2, "snoozed": 1,
               "categories": {"": {"unread": 2, "unseen": 1, "total": 3}, "x": {"unread": 1, "unseen": 1, "total": 1}}})
    );
    assert_eq!(me.counts().await["last_seq"], 13);
    assert_problem(me.get("/v1/me/notifications?status=hidden").await, 400, "").await;
}

#[tokio::test]
async fn counts_of_a_user_without_anything_are_zero() {
    let app = TestApp::spawn().await;
    let me = Me::of(&app, "nobody-yet");
    assert_eq!(
        me.counts().await,
        json!({"last_seq": 0, "unread": 0, "unseen": 0, "total": 0, "archived": 0, "snoozed": 0, "categories": {}})
    );
    let (items, first) = me.list_all("status=unseen").await;
    assert!(items.is_empty());
    assert_eq!(
        (
            first["unread_count"].as_i64(),
            first["unseen_count"].as_i64()
        ),
        (Some(0), Some(0))
    );
    // A category whose counts fall to zero is left out.
    let publisher = Publisher::of(&app);
    let id = publisher
        .one("nobody-yet", "one", json!({"category": "gone"}))
        .await;
    assert_eq!(
        me.counts().await["categories"],
        json!({"gone": {"unread": 1, "unseen": 1, "total": 1}})
    );
    assert_eq!(me.op(&id, "archive").await.status(), 200);
    assert_eq!(me.counts().await["categories"], json!({}));
}
