//! The largest notification the contract allows, and the check that a
//! received one is the one that was sent.

use serde::Deserialize;
use serde_json::{Value, json};

/// `title`: 1–256 characters.
pub const TITLE_CHARS: usize = 256;
/// `body`: at most 4096 characters.
pub const BODY_CHARS: usize = 4096;
/// `data`: a JSON object of at most 16 KiB (16,384 bytes as compact JSON);
/// a few bytes under it.
pub const DATA_BYTES: usize = 16 * 1024 - 4;

/// The publish body of the `n`-th notification (from 0) for `recipients`.
/// Text is pseudo-random letters and digits: nothing to escape, so every
/// length above is exact, and PostgreSQL's TOAST compression gains little
/// on it (the log holds full-size rows, as it would with real content).
pub fn publish_body(n: usize, recipients: &[String]) -> Value {
    let mut text = Text::seeded(n as u64);
    let title = text.take(TITLE_CHARS);
    let body = text.take(BODY_CHARS);
    // `{"n":N,"pad":""}` plus the padding is exactly DATA_BYTES.
    let frame = format!(r#"{{"n":{n},"pad":""}}"#).len();
    let pad = text.take(DATA_BYTES - frame);
    let data = json!({"n": n, "pad": pad});
    debug_assert_eq!(data.to_string().len(), DATA_BYTES);
    json!({"recipients": recipients, "title": title, "body": body, "data": data})
}

/// What a reader checks in a received `notification` event's data: which
/// notification it is (`data.n`) and that nothing was cut.
#[derive(Deserialize)]
pub struct Received<'a> {
    #[serde(borrow)]
    title: &'a str,
    #[serde(borrow)]
    body: &'a str,
    data: ReceivedData<'a>,
}

#[derive(Deserialize)]
struct ReceivedData<'a> {
    n: usize,
    #[serde(borrow)]
    pad: &'a str,
}

impl Received<'_> {
    pub fn n(&self) -> usize {
        self.data.n
    }

    /// Whether every field has the length it was published with.
    pub fn is_whole(&self) -> bool {
        let frame = format!(r#"{{"n":{},"pad":""}}"#, self.data.n).len();
        self.title.len() == TITLE_CHARS
            && self.body.len() == BODY_CHARS
            && self.data.pad.len() == DATA_BYTES - frame
    }
}

/// xorshift64*: cheap, deterministic filler text.
struct Text(u64);

impl Text {
    fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn take(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 58;
                ALPHABET[r as usize % ALPHABET.len()] as char
            })
            .collect()
    }
}
