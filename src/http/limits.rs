//! Publish rate limit per publisher (the token's `sub`): a token bucket of
//! `publish.rate_per_sec` with bursts of `publish.burst`; 0 turns it off.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::UserId;
use crate::http::error::ApiError;

pub struct PublishLimiter {
    limiter: Option<DefaultKeyedRateLimiter<UserId>>,
    clock: DefaultClock,
}

impl PublishLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// 429 with `Retry-After` when `publisher` is over its rate.
    pub fn check(&self, publisher: &UserId) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(publisher).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            metrics::counter!("herald_rate_limited_total").increment(1);
            ApiError::TooManyRequests {
                detail: "this publisher is over its publish rate; retry later".into(),
                retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            }
        })
    }
}
