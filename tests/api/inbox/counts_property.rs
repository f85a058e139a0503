//! The live counts under random operation sequences: several users at once,
//! each driven by its own task through every operation of the message
//! center. After every step the counts of the user's latest event (as their
//! WebSocket or long-poll shows it), `GET /v1/me/counts`, a recount from the
//! lists and the test's own model all agree exactly; and replaying the log
//! from 0 over SSE gives every event the counts it had live.
//!
//! The run is seeded: the seed is printed first (shown when the test fails)
//! and `INBOX_SEED=<seed>` replays the same sequences.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::model::{Model, Note};
use super::{Me, Publisher, id_of, live_counts, recount, time, without_last_seq};
use crate::support::{TestApp, data, ws};

const USERS: u64 = 4;
const STEPS: usize = 60;
const CATEGORIES: [&str; 2] = ["billing", "social"];
const SINGLE_OPS: [&str; 9] = [
    "read",
    "unread",
    "seen",
    "archive",
    "unarchive",
    "snooze",
    "unsnooze",
    "action",
    "delete",
];
const BULK_OPS: [(&str, &str); 4] = [
    ("read-all", "read_all"),
    ("seen-all", "seen_all"),
    ("archive-all", "archived_all"),
    ("delete-all", "deleted_all"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_exact_under_random_operations_on_every_transport() {
    let seed: u64 = std::env::var("INBOX_SEED")
        .ok()
        .map(|s| s.parse().expect("INBOX_SEED is a number"))
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("counts property: seed {seed} (rerun with INBOX_SEED={seed})");
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);

    let mut tasks = Vec::new();
    for u in 0..USERS {
        let me = Me::of(&app, &format!("prop-{u}"));
        // Half the users watch their log over WebSocket, half by polling.
        let feed = if u % 2 == 0 {
            let token = app.token(&me.user, &[]);
            Feed::Ws(Box::new(ws::connect(&app, &token, Some("0")).await), 0)
        } else {
            Feed::Poll(0)
        };
        let publisher = publisher.clone();
        let rng = StdRng::seed_from_u64(seed.wrapping_add(u));
        tasks.push(tokio::spawn(async move {
            let live = run_user(me.clone(), publisher, feed, rng, seed).await;
            (me, live)
        }));
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (me, live) = task.await.expect("a user's run (see the seed above)");
        replay_matches_live(&app, &me, &live, seed).await;
        for (kind, _) in live.events.values() {
            *kinds.entry(kind.clone()).or_default() += 1;
        }
    }
    // What the seed exercised, to judge a run by.
    eprintln!("counts property: events by type {kinds:?}");
}

/// What one user's events looked like live: type and counts by seq, and
/// the id of each `notification` event.
struct Live {
    events: BTreeMap<i64, (String, Value)>,
    created: BTreeMap<i64, String>,
    model: Model,
    last_seq: i64,
}

async fn run_user(
    me: Me,
    publisher: Publisher,
    mut feed: Feed,
    mut rng: StdRng,
    seed: u64,
) -> Live {
    let mut live = Live {
        events: BTreeMap::new(),
        created: BTreeMap::new(),
        model: Model::default(),
        last_seq: 0,
    };
    let mut gone: Vec<String> = Vec::new();
    for step in 0..STEPS {
        let context = format!("seed {seed}, {} step {step}", me.user);
        let expected = act(&mut rng, &me, &publisher, &mut live, &mut gone, &context).await;

        let counts = me.counts().await;
        let last_seq = counts["last_seq"].as_i64().unwrap();
        let events = feed.until(&me, last_seq, &context).await;
        match &expected {
            None => assert_eq!(events, Vec::<Value>::new(), "{context}: no event expected"),
            Some(e) => {
                assert_eq!(
                    events.len(),
                    1,
                    "{context}: one {} event expected: {events:?}",
                    e.kind
                );
                let event = &events[0];
                assert_eq!(event["type"], e.kind, "{context}: {event}");
                if let Some(seq) = e.seq {
                    assert_eq!(
                        event["seq"], seq,
                        "{context}: the answer's seq is the event's"
                    );
                }
                if let Some(id) = &e.id {
                    assert_eq!(event["data"]["id"], id.as_str(), "{context}: {event}");
                }
                // A new or updated one: the event carries it whole.
                if let Some(note) = e.id.as_ref().and_then(|id| live.model.notes.get(id))
                    && matches!(e.kind, "notification" | "updated")
                {
                    note.check(&event["data"], &context);
                }
                if e.kind == "notification" {
                    live.created.insert(
                        event["seq"].as_i64().unwrap(),
                        id_of(&event["data"]).to_owned(),
                    );
                }
                assert!(
                    event["seq"].as_i64().unwrap() > live.last_seq,
                    "{context}: {event}"
                );
            }
        }
        for event in &events {
            assert_eq!(
                event["data"]["counts"],
                live.model.live(),
                "{context}: counts of {event}"
            );
            live.events.insert(
                event["seq"].as_i64().unwrap(),
                (
                    event["type"].as_str().unwrap().to_owned(),
                    event["data"]["counts"].clone(),
                ),
            );
        }
        live.last_seq = last_seq;
        // The latest event the user has seen, whichever step made it.
        if let Some((_, (_, latest))) = live.events.last_key_value() {
            assert_eq!(
                *latest,
                live_counts(&counts),
                "{context}: latest event vs GET /v1/me/counts"
            );
        }
        assert_eq!(
            without_last_seq(&counts),
            live.model.counts(),
            "{context}: GET /v1/me/counts"
        );
        let (recounted, listed) = recount(&me).await;
        assert_eq!(
            recounted,
            live.model.counts(),
            "{context}: recounted from the lists"
        );
        live.model.check_listed(&listed, &context);
    }
    live
}

/// The event a step must cause.
struct Expected {
    kind: &'static str,
    id: Option<String>,
    seq: Option<i64>,
}

impl Expected {
    fn on(kind: &'static str, id: &str) -> Option<Self> {
        Some(Self {
            kind,
            id: Some(id.to_owned()),
            seq: None,
        })
    }
}

/// Performs one random operation, checks its answer against the model and
/// updates the model; the event it must cause, if any.
async fn act(
    rng: &mut StdRng,
    me: &Me,
    publisher: &Publisher,
    live: &mut Live,
    gone: &mut Vec<String>,
    context: &str,
) -> Option<Expected> {
    let model = &mut live.model;
    let roll = rng.random_range(0..100);
    if roll < 30 || (model.notes.is_empty() && gone.is_empty()) {
        return publish(rng, me, publisher, model, context).await;
    }
    if roll < 78 {
        // Now and then an id that is gone: 404 for every operation.
        if !gone.is_empty() && (model.notes.is_empty() || rng.random_ratio(1, 10)) {
            let id = gone[rng.random_range(0..gone.len())].clone();
            let op = SINGLE_OPS[rng.random_range(0..SINGLE_OPS.len())];
            let r = match op {
                "delete" => me.remove(&id).await,
                "snooze" => me.snooze(&id, Utc::now() + Duration::days(2)).await,
                "action" => me.act(&id, "a0").await,
                op => me.op(&id, op).await,
            };
            assert_eq!(r.status(), 404, "{context}: {op} of a deleted one");
            return None;
        }
        if model.notes.is_empty() {
            return publish(rng, me, publisher, model, context).await;
        }
        let op = SINGLE_OPS[rng.random_range(0..SINGLE_OPS.len())];
        // Mostly a notification the operation changes (a random one would
        // rarely be snoozed when unsnoozed); sometimes any, for the no-ops.
        let changes = |n: &Note| match op {
            "read" => !n.read,
            "unread" => n.read,
            "seen" => !n.seen,
            "archive" => !n.archived,
            "unarchive" => n.archived,
            "unsnooze" => n.snoozed_until.is_some(),
            "action" => !n.actions.is_empty() && n.action_taken.is_none(),
            _ => true,
        };
        let mut candidates: Vec<&Note> = model.notes.values().filter(|n| changes(n)).collect();
        if candidates.is_empty() || rng.random_ratio(1, 4) {
            candidates = model.notes.values().collect();
        }
        let id = candidates[rng.random_range(0..candidates.len())].id.clone();
        return single(rng, me, model, gone, &id, op, context).await;
    }
    // delete-all empties much of the center: half as often as the others.
    let (route, kind) = BULK_OPS[[0, 0, 1, 1, 2, 2, 3][rng.random_range(0..7)]];
    let category = rng
        .random_bool(0.5)
        .then(|| ["billing", "social", "nothing"][rng.random_range(0..3)]);
    let up_to_seq = rng
        .random_bool(0.5)
        .then(|| rng.random_range(0..=live.last_seq));
    let mut body = serde_json::Map::new();
    if let Some(c) = category {
        body.insert("category".into(), c.into());
    }
    if let Some(s) = up_to_seq {
        body.insert("up_to_seq".into(), s.into());
    }
    // Without filters, sometimes no body at all (as v1's read-all).
    let body = (!body.is_empty() || rng.random_bool(0.5)).then_some(Value::Object(body));
    let r = me.bulk(route, body.as_ref()).await;
    assert_eq!(
        r.status(),
        200,
        "{context}: {route} {body:?}: {:?}",
        r.text().await
    );
    let answer: Value = r.json().await.unwrap();
    let effective = up_to_seq.unwrap_or(live.last_seq);
    let mut changed = 0;
    let mut deleted = Vec::new();
    for note in model.matching(category, effective) {
        match route {
            "read-all" if !note.read => {
                (note.read, note.seen) = (true, true);
                changed += 1;
            }
            "seen-all" if !note.seen => {
                note.seen = true;
                changed += 1;
            }
            "archive-all" if !note.archived => {
                note.archived = true;
                changed += 1;
            }
            "delete-all" => {
                deleted.push(note.id.clone());
                changed += 1;
            }
            _ => {}
        }
    }
    for id in deleted {
        model.notes.remove(&id);
        gone.push(id);
    }
    assert_eq!(
        (
            answer["up_to_seq"].as_i64(),
            answer["category"].as_str(),
            answer["updated"].as_i64()
        ),
        (Some(effective), category, Some(changed)),
        "{context}: {route} {body:?} answered {answer}"
    );
    Some(Expected {
        kind,
        id: None,
        seq: None,
    })
}

async fn publish(
    rng: &mut StdRng,
    me: &Me,
    publisher: &Publisher,
    model: &mut Model,
    context: &str,
) -> Option<Expected> {
    let category = rng
        .random_bool(0.6)
        .then(|| CATEGORIES[rng.random_range(0..CATEGORIES.len())]);
    let key = rng
        .random_bool(0.35)
        .then(|| format!("k{}", rng.random_range(0..3)));
    let renotify = key.is_some() && rng.random_bool(0.5);
    let actions: Vec<String> = if rng.random_bool(0.4) {
        (0..rng.random_range(1..=3))
            .map(|i| format!("a{i}"))
            .collect()
    } else {
        Vec::new()
    };
    // Sometimes with another recipient in the same request.
    let mut recipients = vec![me.user.clone()];
    if rng.random_bool(0.25) {
        recipients.push(format!("{}-bystander", me.user));
    }
    let mut body = json!({ "recipients": recipients, "title": context });
    let fields = body.as_object_mut().unwrap();
    if let Some(c) = category {
        fields.insert("category".into(), c.into());
    }
    if let Some(k) = &key {
        fields.insert("key".into(), k.as_str().into());
    }
    if renotify {
        fields.insert("renotify".into(), true.into());
    }
    if !actions.is_empty() {
        let actions: Vec<Value> = actions
            .iter()
            .map(|id| json!({"id": id, "label": format!("do {id}"), "url": format!("https://example.com/{id}")}))
            .collect();
        fields.insert("actions".into(), actions.into());
    }
    let items = publisher.publish(&body).await;
    assert_eq!(items.len(), recipients.len(), "{context}: {items:?}");
    let item = items
        .iter()
        .find(|i| i["user_id"] == me.user.as_str())
        .unwrap_or_else(|| panic!("{context}: no item for {} in {items:?}", me.user));
    let seq = item["seq"].as_i64().unwrap();
    let existing = key.as_deref().and_then(|k| model.by_key(k));
    match existing {
        Some(note) => {
            assert_eq!(
                (item["id"].as_str(), item["updated"].as_bool()),
                (Some(note.id.as_str()), Some(true)),
                "{context}: an update by key answers the same id, updated: {item}"
            );
            note.category = category.map(str::to_owned);
            note.actions = actions;
            if renotify {
                (note.read, note.seen, note.archived, note.action_taken) =
                    (false, false, false, None);
            }
            Some(Expected {
                kind: "updated",
                id: Some(note.id.clone()),
                seq: Some(seq),
            })
        }
        None => {
            assert!(
                item.get("updated").is_none(),
                "{context}: a new one: {item}"
            );
            let id = id_of(item).to_owned();
            let mut note = Note::new(&id, seq);
            note.category = category.map(str::to_owned);
            note.key = key;
            note.actions = actions;
            model.notes.insert(id.clone(), note);
            Some(Expected {
                kind: "notification",
                id: Some(id),
                seq: Some(seq),
            })
        }
    }
}

async fn single(
    rng: &mut StdRng,
    me: &Me,
    model: &mut Model,
    gone: &mut Vec<String>,
    id: &str,
    op: &str,
    context: &str,
) -> Option<Expected> {
    let context = format!("{context}: {op} {id}");
    if op == "delete" {
        let r = me.remove(id).await;
        assert_eq!(r.status(), 204, "{context}");
        model.notes.remove(id);
        gone.push(id.to_owned());
        return Expected::on("deleted", id);
    }
    let note = model.notes.get_mut(id).unwrap();
    let (response, expected) = match op {
        "action" => {
            let Some(action) = (!note.actions.is_empty())
                .then(|| note.actions[rng.random_range(0..note.actions.len())].clone())
            else {
                // Taken before an update emptied its actions: whether 404
                // or 409 comes first is not fixed, so it is not asked.
                if note.action_taken.is_some() {
                    return None;
                }
                let r = me.act(id, "a0").await;
                assert_eq!(r.status(), 404, "{context}: it has no actions");
                return None;
            };
            let r = me.act(id, &action).await;
            if note.action_taken.is_some() {
                assert_eq!(r.status(), 409, "{context}: the first action won");
                return None;
            }
            (note.action_taken, note.read, note.seen) = (Some(action), true, true);
            (r, Expected::on("action", id))
        }
        "snooze" => {
            // 1 to 30 days ahead, to the millisecond as sent.
            let until = Utc::now()
                + Duration::days(rng.random_range(1..30))
                + Duration::seconds(rng.random_range(0..86_400));
            let mut until = time(&json!(super::rfc3339(until)));
            if note.snoozed_until == Some(until) {
                until += Duration::seconds(1);
            }
            let r = me.snooze(id, until).await;
            note.snoozed_until = Some(until);
            (r, Expected::on("snoozed", id))
        }
        op => {
            let r = me.op(id, op).await;
            let (changed, kind) = match op {
                "read" => (!note.read, "read"),
                "unread" => (note.read, "unread"),
                "seen" => (!note.seen, "seen"),
                "archive" => (!note.archived, "archived"),
                "unarchive" => (note.archived, "unarchived"),
                "unsnooze" => (note.snoozed_until.is_some(), "unsnoozed"),
                other => unreachable!("{other}"),
            };
            match op {
                "read" => (note.read, note.seen) = (true, true),
                "unread" => note.read = false,
                "seen" => note.seen = true,
                "archive" => note.archived = true,
                "unarchive" => note.archived = false,
                _ => note.snoozed_until = None,
            }
            (r, changed.then(|| Expected::on(kind, id)).flatten())
        }
    };
    assert_eq!(
        response.status(),
        200,
        "{context}: {:?}",
        response.text().await
    );
    let answer: Value = response.json().await.unwrap();
    note.check(&answer, &format!("{context}: the answer"));
    expected
}

/// Where a user's task reads their log: a WebSocket opened at seq 0, or
/// polls; each with the last seq read.
enum Feed {
    Ws(Box<ws::Socket>, i64),
    Poll(i64),
}

impl Feed {
    /// The events after the last one read, up to `last_seq`.
    async fn until(&mut self, me: &Me, last_seq: i64, context: &str) -> Vec<Value> {
        match self {
            Feed::Poll(after) => {
                let events = me.events_after(*after).await;
                if let Some(last) = events.last() {
                    *after = last["seq"].as_i64().unwrap();
                }
                assert_eq!(*after, last_seq, "{context}: the poll reaches last_seq");
                events
            }
            Feed::Ws(socket, after) => {
                let mut events = Vec::new();
                while *after < last_seq {
                    let frame = ws::next_json(socket).await;
                    let seq = frame["seq"].as_i64().unwrap();
                    assert!(
                        seq > *after && seq <= last_seq,
                        "{context}: frame {frame} after {after}"
                    );
                    *after = seq;
                    events.push(frame);
                }
                events
            }
        }
    }
}

/// Replaying the whole log over SSE gives each event the type and counts
/// it had live. The only events missing are the `notification` events of
/// notifications deleted since (the replay reads them from the notification).
async fn replay_matches_live(app: &TestApp, me: &Me, live: &Live, seed: u64) {
    let context = format!("seed {seed}, {} replay from 0", me.user);
    let mut stream = app.sse(&me.user, Some("0"), None).await;
    let mut replayed = BTreeMap::new();
    while replayed
        .last_key_value()
        .is_none_or(|(&seq, _)| seq < live.last_seq)
    {
        let event = stream.next().await.expect("the stream stays open");
        let seq: i64 = event.id.parse().unwrap();
        assert!(
            replayed
                .last_key_value()
                .is_none_or(|(&last, _)| seq > last),
            "{context}: order"
        );
        replayed.insert(seq, (event.event.clone(), data(&event)["counts"].clone()));
    }
    for (seq, got) in &replayed {
        assert_eq!(
            Some(got),
            live.events.get(seq),
            "{context}: seq {seq} (type, counts)"
        );
    }
    for (seq, (kind, _)) in &live.events {
        if replayed.contains_key(seq) {
            continue;
        }
        let deleted = kind == "notification"
            && live
                .created
                .get(seq)
                .is_some_and(|id| !live.model.notes.contains_key(id));
        assert!(
            deleted,
            "{context}: seq {seq} ({kind}) is missing from the replay"
        );
    }
}
