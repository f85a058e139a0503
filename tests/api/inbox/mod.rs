//! Inbox v2 (issue #11): seen, archive, snooze, actions, updates in place by
//! key, bulk operations with filters, timers, and the live counts every event
//! carries, over REST and every live transport. One concern per file; what
//! they share is here.

mod actions;
mod admin_and_retention;
mod bulk;
mod counts_property;
mod counts_race;
mod lists;
mod model;
mod timer_races;
mod timers;
mod transports;
mod update_by_key;
mod validation;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::support::{Service, TestApp};

/// One user's side of the API: their token and the routes under `/v1/me`.
#[derive(Clone)]
pub struct Me {
    pub user: String,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Me {
    pub fn of(app: &TestApp, user: &str) -> Self {
        Self {
            user: user.to_owned(),
            base: app.address.clone(),
            token: app.token(user, &[]),
            http: app.http.clone(),
        }
    }

    pub fn on(service: &Service, user: &str) -> Self {
        Self {
            user: user.to_owned(),
            base: service.base.clone(),
            token: service.token(user),
            http: service.http.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let request = self.http.get(self.url(path)).bearer_auth(&self.token);
        request.send().await.unwrap()
    }

    /// A POST with a JSON body, or with none at all (as v1's read-all).
    pub async fn post(&self, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        let request = self.http.delete(self.url(path)).bearer_auth(&self.token);
        request.send().await.unwrap()
    }

    /// `POST /v1/me/notifications/{id}/{op}` without a body.
    pub async fn op(&self, id: &str, op: &str) -> reqwest::Response {
        self.post(&format!("/v1/me/notifications/{id}/{op}"), None)
            .await
    }

    pub async fn snooze(&self, id: &str, until: DateTime<Utc>) -> reqwest::Response {
        self.post(
            &format!("/v1/me/notifications/{id}/snooze"),
            Some(&json!({ "until": rfc3339(until) })),
        )
        .await
    }

    pub async fn act(&self, id: &str, action: &str) -> reqwest::Response {
        self.op(id, &format!("actions/{action}")).await
    }

    /// `POST /v1/me/notifications/{bulk}` (read-all, seen-all, ...).
    pub async fn bulk(&self, bulk: &str, body: Option<&Value>) -> reqwest::Response {
        self.post(&format!("/v1/me/notifications/{bulk}"), body)
            .await
    }

    pub async fn remove(&self, id: &str) -> reqwest::Response {
        self.delete(&format!("/v1/me/notifications/{id}")).await
    }

    /// `GET /v1/me/notifications/{id}`, whatever it answers.
    pub async fn notification(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/v1/me/notifications/{id}")).await
    }

    /// `GET /v1/me/counts`.
    pub async fn counts(&self) -> Value {
        let r = self.get("/v1/me/counts").await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// `GET /v1/me/events?after=&wait=`: one (long-)poll.
    pub async fn poll(&self, after: i64, wait_secs: u64) -> Value {
        let r = self
            .get(&format!(
                "/v1/me/events?after={after}&wait={wait_secs}&limit=500"
            ))
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// Every event after `after` that is in the log now, in order.
    pub async fn events_after(&self, mut after: i64) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let page = self.poll(after, 0).await;
            let page = page["events"].as_array().unwrap().clone();
            let Some(last) = page.last() else {
                return events;
            };
            after = last["seq"].as_i64().unwrap();
            events.extend(page);
        }
    }

    /// Every item of the list with `query` (e.g. `status=archived`), paging
    /// by `before`, and the answer of its first page.
    pub async fn list_all(&self, query: &str) -> (Vec<Value>, Value) {
        let mut items = Vec::new();
        let mut first = None;
        let mut before = String::new();
        loop {
            let r = self
                .get(&format!("/v1/me/notifications?{query}&limit=100{before}"))
                .await;
            assert_eq!(r.status(), 200, "{query}: {:?}", r.text().await);
            let page: Value = r.json().await.unwrap();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            let next = page["next_before"].as_i64();
            first.get_or_insert(page);
            match next {
                Some(seq) => before = format!("&before={seq}"),
                None => return (items, first.unwrap()),
            }
        }
    }

    /// The ids a list with `query` holds, in its order.
    pub async fn ids(&self, query: &str) -> Vec<String> {
        let (items, _) = self.list_all(query).await;
        items.iter().map(|n| id_of(n).to_owned()).collect()
    }
}

/// A publisher's side: `POST /v1/notifications`.
#[derive(Clone)]
pub struct Publisher {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Publisher {
    pub fn of(app: &TestApp) -> Self {
        Self {
            url: app.url("/v1/notifications"),
            token: app.publisher(),
            http: app.http.clone(),
        }
    }

    pub fn on(service: &Service) -> Self {
        Self {
            url: service.url("/v1/notifications"),
            token: service.publisher(),
            http: service.http.clone(),
        }
    }

    pub async fn send(&self, body: &Value) -> reqwest::Response {
        let request = self.http.post(&self.url).bearer_auth(&self.token);
        request.json(body).send().await.unwrap()
    }

    /// Publishes `body`, which must be accepted; the answer's items.
    pub async fn publish(&self, body: &Value) -> Vec<Value> {
        let r = self.send(body).await;
        assert_eq!(r.status(), 201, "{body}: {:?}", r.text().await);
        let answer: Value = r.json().await.unwrap();
        answer["notifications"].as_array().unwrap().clone()
    }

    /// Publishes one notification with `extra` members to `user`; its id.
    pub async fn one(&self, user: &str, title: &str, extra: Value) -> String {
        let mut body = json!({ "recipients": [user], "title": title });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let items = self.publish(&body).await;
        assert_eq!(items.len(), 1);
        id_of(&items[0]).to_owned()
    }
}

pub fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time, not {v}")))
        .unwrap()
        .to_utc()
}

/// The live counts an event or a reset carries, taken from a
/// `GET /v1/me/counts` answer.
pub fn live_counts(counts: &Value) -> Value {
    json!({ "unread": counts["unread"], "unseen": counts["unseen"] })
}

/// A `GET /v1/me/counts` answer without its `last_seq`.
pub fn without_last_seq(counts: &Value) -> Value {
    let mut counts = counts.clone();
    counts.as_object_mut().unwrap().remove("last_seq");
    counts
}

/// What `GET /v1/me/counts` must say (without `last_seq`), counted from the
/// lists, and every notification the lists hold (each exactly once). Each
/// list's `unread_count`/`unseen_count` must be the totals.
pub async fn recount(me: &Me) -> (Value, Vec<Value>) {
    let (all, all_page) = me.list_all("status=all").await;
    let (unread, unread_page) = me.list_all("status=unread").await;
    let (unseen, unseen_page) = me.list_all("status=unseen").await;
    let (archived, archived_page) = me.list_all("status=archived").await;
    let (snoozed, snoozed_page) = me.list_all("status=snoozed").await;

    let mut categories: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    let (mut unread_n, mut unseen_n) = (0, 0);
    for n in &all {
        let c = categories
            .entry(n["category"].as_str().unwrap_or("").to_owned())
            .or_default();
        c[2] += 1;
        if n["read_at"].is_null() {
            c[0] += 1;
            unread_n += 1;
        }
        if n["seen_at"].is_null() {
            c[1] += 1;
            unseen_n += 1;
        }
    }
    let ids =
        |items: &[Value]| -> Vec<String> { items.iter().map(|n| id_of(n).to_owned()).collect() };
    let subset = |items: &[Value], keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        items
            .iter()
            .filter(|n| keep(n))
            .map(|n| id_of(n).to_owned())
            .collect()
    };
    let user = &me.user;
    assert_eq!(
        ids(&unread),
        subset(&all, &|n| n["read_at"].is_null()),
        "{user}: status=unread is the unread part of status=all"
    );
    assert_eq!(
        ids(&unseen),
        subset(&all, &|n| n["seen_at"].is_null()),
        "{user}: status=unseen is the unseen part of status=all"
    );
    for n in &all {
        assert!(
            n["archived_at"].is_null() && n["snoozed_until"].is_null(),
            "{user}: status=all lists {n}"
        );
    }
    for n in &archived {
        assert!(
            !n["archived_at"].is_null(),
            "{user}: status=archived lists {n}"
        );
    }
    for n in &snoozed {
        assert!(
            n["archived_at"].is_null() && !n["snoozed_until"].is_null(),
            "{user}: status=snoozed lists {n}"
        );
    }
    for page in [
        &all_page,
        &unread_page,
        &unseen_page,
        &archived_page,
        &snoozed_page,
    ] {
        assert_eq!(
            (page["unread_count"].as_i64(), page["unseen_count"].as_i64()),
            (Some(unread_n), Some(unseen_n)),
            "{user}: a list's unread_count/unseen_count are the totals"
        );
    }
    let counts = json!({
        "unread": unread_n,
        "unseen": unseen_n,
        "total": all.len(),
        "archived": archived.len(),
        "snoozed": snoozed.len(),
        "categories": categories
            .into_iter()
            .map(|(name, [unread, unseen, total])| {
                (name, json!({"unread": unread, "unseen": unseen, "total": total}))
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    let mut everything = all;
    everything.extend(archived);
    everything.extend(snoozed);
    (counts, everything)
}

/// The members of an object, sorted.
pub fn members(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object, not {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The members of a notification object, in the order the decisions fix.
pub const NOTIFICATION_FIELDS: [&str; 17] = [
    "id",
    "seq",
    "title",
    "body",
    "category",
    "data",
    "created_at",
    "read_at",
    "expires_at",
    "seen_at",
    "archived_at",
    "snoozed_until",
    "actions",
    "action_taken",
    "key",
    "updated_at",
    "topic",
];
