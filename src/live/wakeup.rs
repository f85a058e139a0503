//! The NOTIFY payload: which users have events up to which seq, and which
//! instance committed them (it has already woken its own connections).
//! Only ids and numbers travel: the events themselves are read from the log.
//! The same channel carries an administrator's disconnects (`k`): users whose
//! live connections every other instance must end.

use serde::{Deserialize, Serialize};

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payload {
    /// The publishing instance.
    #[serde(rename = "i")]
    pub instance: String,
    /// `[user_id, seq]` pairs.
    #[serde(rename = "w")]
    pub wakes: Vec<(String, i64)>,
    /// Users to disconnect. Absent in plain wake-ups, which older instances
    /// (that ignore unknown fields) still understand.
    #[serde(default, rename = "k", skip_serializing_if = "Vec::is_empty")]
    pub kicks: Vec<String>,
    /// A probe the sending instance's own listener must hear back, to prove
    /// its LISTEN connection is alive. Other instances ignore it.
    #[serde(default, rename = "p", skip_serializing_if = "Option::is_none")]
    pub probe: Option<u64>,
}

/// Splits wake-ups into payloads that each fit in one NOTIFY.
pub fn encode(instance: &str, wakes: impl IntoIterator<Item = (String, i64)>) -> Vec<String> {
    let wakes: Vec<(String, i64)> = wakes.into_iter().collect();
    let users: Vec<&str> = wakes.iter().map(|(u, _)| u.as_str()).collect();
    let parts = split(instance, &users);
    group(parts, wakes)
        .into_iter()
        .map(|wakes| {
            finish(Payload {
                instance: instance.to_owned(),
                wakes,
                kicks: Vec::new(),
                probe: None,
            })
        })
        .collect()
}

/// Disconnects for other instances, split into payloads that each fit in one
/// NOTIFY (a kick costs less than a wake-up, so `split` errs on the safe side).
pub fn encode_kicks(instance: &str, users: impl IntoIterator<Item = String>) -> Vec<String> {
    let users: Vec<String> = users.into_iter().collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let parts = split(instance, &names);
    group(parts, users)
        .into_iter()
        .map(|kicks| {
            finish(Payload {
                instance: instance.to_owned(),
                wakes: Vec::new(),
                kicks,
                probe: None,
            })
        })
        .collect()
}

/// Puts each item in the payload `split` chose for it.
fn group<T>(parts: Vec<i32>, items: Vec<T>) -> Vec<Vec<T>> {
    let mut payloads: Vec<Vec<T>> = Vec::new();
    for (item, part) in items.into_iter().zip(parts) {
        if part as usize == payloads.len() {
            payloads.push(Vec::new());
        }
        payloads[part as usize].push(item);
    }
    payloads
}

/// Which payload (0, 1, …) each user's wake-up goes in so that every payload
/// fits in one NOTIFY, whatever its seq. Publishing builds the payloads in
/// SQL from this split, in the statement that reserves the seqs.
pub fn split(instance: &str, users: &[&str]) -> Vec<i32> {
    let empty = Payload {
        instance: instance.to_owned(),
        wakes: Vec::new(),
        kicks: Vec::new(),
        probe: None,
    };
    let overhead = serde_json::to_string(&empty).expect("serializes").len();
    let mut parts = Vec::with_capacity(users.len());
    let (mut part, mut size, mut in_part) = (0, overhead, 0);
    for user in users {
        // A pair costs its JSON-escaped user id plus the number and punctuation.
        let cost = serde_json::to_string(user).expect("serializes").len() + 24;
        if in_part > 0 && size + cost > MAX_PAYLOAD {
            part += 1;
            size = overhead;
            in_part = 0;
        }
        size += cost;
        in_part += 1;
        parts.push(part);
    }
    parts
}

/// The listener's liveness probe `n` (see [`Payload::probe`]).
pub fn encode_probe(instance: &str, n: u64) -> String {
    finish(Payload {
        instance: instance.to_owned(),
        wakes: Vec::new(),
        kicks: Vec::new(),
        probe: Some(n),
    })
}

fn finish(payload: Payload) -> String {
    serde_json::to_string(&payload).expect("serializes")
}

pub fn decode(payload: &str) -> Option<Payload> {
    serde_json::from_str(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_payloads_under_the_notify_limit() {
        let wakes: Vec<_> = (0..2000)
            .map(|i| (format!("user-{i}-ü\"/"), i64::MAX - i))
            .collect();
        let payloads = encode("inst", wakes.clone());
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() < 8000, "{}", p.len());
            let decoded = decode(p).unwrap();
            assert_eq!(decoded.instance, "inst");
            back.extend(decoded.wakes);
        }
        assert_eq!(back, wakes);
    }

    #[test]
    fn kicks_travel_in_their_own_field_and_split_too() {
        let users: Vec<String> = (0..500).map(|i| format!("user-{i}-ü\"/%")).collect();
        let payloads = encode_kicks("inst", users.clone());
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() < 8000, "{}", p.len());
            let decoded = decode(p).unwrap();
            assert_eq!(decoded.instance, "inst");
            assert!(decoded.wakes.is_empty());
            back.extend(decoded.kicks);
        }
        assert_eq!(back, users);
    }

    #[test]
    fn probes_carry_no_wake_ups_and_decode_as_such() {
        let p = encode_probe("inst", 7);
        assert_eq!(p, r#"{"i":"inst","w":[],"p":7}"#);
        let decoded = decode(&p).unwrap();
        assert_eq!(decoded.probe, Some(7));
        assert!(decoded.wakes.is_empty() && decoded.kicks.is_empty());
    }

    #[test]
    fn plain_wake_ups_have_no_kicks_field() {
        let p = &encode("inst", [("u".to_owned(), 3)])[0];
        assert_eq!(p, r#"{"i":"inst","w":[["u",3]]}"#);
        assert!(decode(p).unwrap().kicks.is_empty());
    }
}
