//! Fault tests: the service killed mid-traffic and restarted, PostgreSQL
//! going away under open streams, scheduled publishes coming due across
//! both, the LISTEN connection lost on every instance, a stalled client
//! next to a healthy one, and connection churn.
//! Real processes, real PostgreSQL, real SSE / WebSocket / long-poll clients;
//! every check is exact: each event exactly once, in seq order.

mod churn;
mod kill_restart;
mod listener_loss;
mod postgres_outage;
mod publishers;
mod schedules;
mod snooze_restart;
mod stalled_client;
mod subscribers;

use publishers::{Outcome, Publishers, check_attempts, last_seq, stored};
use subscribers::{Got, Subscriber, Via};
