//! Shared by the benchmark targets.

// Each benchmark target compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod args;
pub mod jwt;
pub mod resuming;
pub mod server;

use serde_json::{Value, json};

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }

    pub fn json(self) -> Value {
        json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }

    pub fn human(self) -> String {
        format!(
            "p50 {} / p99 {} / max {}",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}
