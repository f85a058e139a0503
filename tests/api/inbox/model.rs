//! What a user's message center must hold after a sequence of operations,
//! computed from the contract and the server decisions alone, so the tests
//! can predict every answer, every event and every count exactly.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::time;

#[derive(Clone, Debug)]
pub struct Note {
    pub id: String,
    pub seq: i64,
    pub category: Option<String>,
    pub key: Option<String>,
    pub actions: Vec<String>,
    pub read: bool,
    pub seen: bool,
    pub archived: bool,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub action_taken: Option<String>,
}

impl Note {
    pub fn new(id: &str, seq: i64) -> Self {
        Self {
            id: id.to_owned(),
            seq,
            category: None,
            key: None,
            actions: Vec::new(),
            read: false,
            seen: false,
            archived: false,
            snoozed_until: None,
            action_taken: None,
        }
    }

    /// The state a `notification` or `updated` event's data (or a REST
    /// object) shows.
    pub fn shown(item: &Value) -> Self {
        Self {
            id: item["id"].as_str().unwrap().to_owned(),
            seq: item["seq"].as_i64().unwrap(),
            category: item["category"].as_str().map(str::to_owned),
            key: item["key"].as_str().map(str::to_owned),
            actions: item["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned())
                .collect(),
            read: item["read_at"].is_string(),
            seen: item["seen_at"].is_string(),
            archived: item["archived_at"].is_string(),
            snoozed_until: (!item["snoozed_until"].is_null()).then(|| time(&item["snoozed_until"])),
            action_taken: item["action_taken"]["id"].as_str().map(str::to_owned),
        }
    }

    /// Counted in unread/unseen/total: neither archived nor snoozed.
    fn in_counts(&self) -> bool {
        !self.archived && self.snoozed_until.is_none()
    }

    /// `item` (a REST object or `notification`/`updated` event data) shows
    /// exactly this state.
    pub fn check(&self, item: &Value, context: &str) {
        let shown = (
            item["id"].as_str(),
            item["seq"].as_i64(),
            item["category"].as_str(),
            item["key"].as_str(),
            item["read_at"].is_string(),
            item["seen_at"].is_string(),
            item["archived_at"].is_string(),
            (!item["snoozed_until"].is_null()).then(|| time(&item["snoozed_until"])),
            item["action_taken"]["id"].as_str(),
            item["actions"]
                .as_array()
                .unwrap_or_else(|| panic!("{context}: actions in {item}"))
                .iter()
                .map(|a| a["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
        );
        let expected = (
            Some(self.id.as_str()),
            Some(self.seq),
            self.category.as_deref(),
            self.key.as_deref(),
            self.read,
            self.seen,
            self.archived,
            self.snoozed_until,
            self.action_taken.as_deref(),
            self.actions.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(
            shown, expected,
            "{context}: (id, seq, category, key, read, seen, archived, snoozed_until, \
             action_taken, actions) of {item}"
        );
    }
}

#[derive(Default, Debug)]
pub struct Model {
    pub notes: BTreeMap<String, Note>,
}

impl Model {
    /// `GET /v1/me/counts` without `last_seq`.
    pub fn counts(&self) -> Value {
        let mut categories: BTreeMap<&str, [i64; 3]> = BTreeMap::new();
        let (mut unread, mut unseen, mut total, mut archived, mut snoozed) = (0, 0, 0, 0, 0);
        for n in self.notes.values() {
            if n.archived {
                archived += 1;
            } else if n.snoozed_until.is_some() {
                snoozed += 1;
            }
            if !n.in_counts() {
                continue;
            }
            let c = categories
                .entry(n.category.as_deref().unwrap_or(""))
                .or_default();
            total += 1;
            c[2] += 1;
            if !n.read {
                unread += 1;
                c[0] += 1;
            }
            if !n.seen {
                unseen += 1;
                c[1] += 1;
            }
        }
        json!({
            "unread": unread,
            "unseen": unseen,
            "total": total,
            "archived": archived,
            "snoozed": snoozed,
            "categories": categories
                .into_iter()
                .map(|(name, [unread, unseen, total])| {
                    (name.to_owned(), json!({"unread": unread, "unseen": unseen, "total": total}))
                })
                .collect::<serde_json::Map<_, _>>(),
        })
    }

    /// The `counts` member every event carries.
    pub fn live(&self) -> Value {
        let counts = self.counts();
        json!({ "unread": counts["unread"], "unseen": counts["unseen"] })
    }

    pub fn by_key(&mut self, key: &str) -> Option<&mut Note> {
        self.notes
            .values_mut()
            .find(|n| n.key.as_deref() == Some(key))
    }

    /// The notifications a bulk operation with these filters covers:
    /// archived and snoozed ones included.
    pub fn matching(&mut self, category: Option<&str>, up_to_seq: i64) -> Vec<&mut Note> {
        self.notes
            .values_mut()
            .filter(|n| {
                n.seq <= up_to_seq && category.is_none_or(|c| n.category.as_deref() == Some(c))
            })
            .collect()
    }

    /// Applies one event `{"seq", "type", "data"}` as a client would.
    /// A `notification` is new, so unread, unseen and in the center whatever
    /// its data says (a replay shows its current state); an `updated` one is
    /// as its data shows, which is stored with the event.
    pub fn apply(&mut self, event: &Value) {
        let data = &event["data"];
        let kind = event["type"].as_str().unwrap();
        if kind.ends_with("_all") {
            let category = data["category"].as_str();
            let up_to_seq = data["up_to_seq"].as_i64().unwrap();
            let mut gone = Vec::new();
            for n in self.matching(category, up_to_seq) {
                match kind {
                    "read_all" => (n.read, n.seen) = (true, true),
                    "seen_all" => n.seen = true,
                    "archived_all" => n.archived = true,
                    "deleted_all" => gone.push(n.id.clone()),
                    other => panic!("unknown event type {other}"),
                }
            }
            for id in gone {
                self.notes.remove(&id);
            }
            return;
        }
        let id = data["id"].as_str().unwrap().to_owned();
        match kind {
            "notification" => {
                let mut n = Note::shown(data);
                (n.read, n.seen, n.archived, n.snoozed_until, n.action_taken) =
                    (false, false, false, None, None);
                self.notes.insert(id, n);
                return;
            }
            "updated" => {
                self.notes.insert(id, Note::shown(data));
                return;
            }
            "deleted" | "expired" => {
                self.notes.remove(&id);
                return;
            }
            _ => {}
        }
        let Some(n) = self.notes.get_mut(&id) else {
            return;
        };
        match kind {
            "read" => (n.read, n.seen) = (true, true),
            "unread" => n.read = false,
            "seen" => n.seen = true,
            "archived" => n.archived = true,
            "unarchived" => n.archived = false,
            "snoozed" => n.snoozed_until = Some(time(&data["until"])),
            "unsnoozed" => n.snoozed_until = None,
            "action" => {
                n.action_taken = Some(data["action_id"].as_str().unwrap().to_owned());
                (n.read, n.seen) = (true, true);
            }
            other => panic!("unknown event type {other}"),
        }
    }

    /// Every notification the lists hold matches the model, and the lists
    /// hold each of them exactly once.
    pub fn check_listed(&self, listed: &[Value], context: &str) {
        let mut ids: Vec<&str> = listed.iter().map(|n| n["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        let expected: Vec<&str> = self.notes.keys().map(String::as_str).collect();
        assert_eq!(ids, expected, "{context}: the ids the lists hold");
        for item in listed {
            self.notes[item["id"].as_str().unwrap()].check(item, context);
        }
    }
}
