use chrono::{DateTime, Utc};

/// Now, at the precision PostgreSQL stores (microseconds), so an event sent
/// live equals the same event replayed.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).expect("in range")
}
