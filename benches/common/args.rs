//! The benchmarks' command lines: words that are either flags with a value
//! (`--rate 500` or `--rate=500`) or bare words (scenario names, and under
//! `cargo test` libtest's own flags and filters).

use anyhow::Context;

pub struct Words<'a> {
    words: &'a [String],
    next: usize,
    /// The value given with `=` to the word last returned.
    inline: Option<String>,
}

impl<'a> Words<'a> {
    pub fn new(words: &'a [String]) -> Self {
        Self {
            words,
            next: 0,
            inline: None,
        }
    }

    /// The next flag or bare word, without any `=value`.
    pub fn next_word(&mut self) -> Option<String> {
        let word = self.words.get(self.next)?;
        self.next += 1;
        match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                self.inline = Some(value.to_owned());
                Some(flag.to_owned())
            }
            _ => {
                self.inline = None;
                Some(word.clone())
            }
        }
    }

    /// The value of the flag last returned: after `=`, else the next word.
    pub fn value(&mut self, flag: &str) -> anyhow::Result<String> {
        if let Some(value) = self.inline.take() {
            return Ok(value);
        }
        let value = self
            .words
            .get(self.next)
            .cloned()
            .with_context(|| format!("{flag} needs a value"))?;
        self.next += 1;
        Ok(value)
    }
}
