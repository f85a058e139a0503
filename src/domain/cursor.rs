/// Where a client says it is in its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// No resume point: live events only, from the current seq.
    Live,
    /// "I have seen everything up to and including this seq."
    After(i64),
    /// Something that is not a non-negative integer: the client gets `reset`.
    Invalid,
}

impl ResumePoint {
    pub fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") => Self::Live,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 0 && s.bytes().all(|b| b.is_ascii_digit()) => Self::After(n),
                _ => Self::Invalid,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resume_points() {
        assert_eq!(ResumePoint::parse(None), ResumePoint::Live);
        assert_eq!(ResumePoint::parse(Some("")), ResumePoint::Live);
        assert_eq!(ResumePoint::parse(Some("0")), ResumePoint::After(0));
        assert_eq!(ResumePoint::parse(Some("42")), ResumePoint::After(42));
        for bad in ["-1", "+3", "abc", "1.5", "99999999999999999999"] {
            assert_eq!(ResumePoint::parse(Some(bad)), ResumePoint::Invalid, "{bad}");
        }
    }
}
