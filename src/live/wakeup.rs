//! The NOTIFY payload: which users have events up to which seq, and which
//! instance committed them (it has already woken its own connections).
//! Only ids and numbers travel: the events themselves are read from the log.

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
}

/// Splits wake-ups into payloads that each fit in one NOTIFY.
pub fn encode(instance: &str, wakes: impl IntoIterator<Item = (String, i64)>) -> Vec<String> {
    let mut payloads = Vec::new();
    let empty = Payload {
        instance: instance.to_owned(),
        wakes: Vec::new(),
    };
    let overhead = serde_json::to_string(&empty).expect("serializes").len();
    let mut current = Vec::new();
    let mut size = overhead;
    for (user, seq) in wakes {
        // A pair costs its JSON-escaped user id plus the number and punctuation.
        let cost = serde_json::to_string(&user).expect("serializes").len() + 24;
        if !current.is_empty() && size + cost > MAX_PAYLOAD {
            payloads.push(finish(instance, std::mem::take(&mut current)));
            size = overhead;
        }
        size += cost;
        current.push((user, seq));
    }
    if !current.is_empty() {
        payloads.push(finish(instance, current));
    }
    payloads
}

fn finish(instance: &str, wakes: Vec<(String, i64)>) -> String {
    serde_json::to_string(&Payload {
        instance: instance.to_owned(),
        wakes,
    })
    .expect("serializes")
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
}
