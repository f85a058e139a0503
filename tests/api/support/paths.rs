//! User ids in URL paths.

/// Percent-encodes everything but unreserved characters, as a client must
/// for a user id in a path (`/` as `%2F`, `%` as `%25`, UTF-8 bytes).
pub fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
