//! Deployment tests: Herald as it ships. Real `herald serve` processes on
//! one private PostgreSQL behind Debian's nginx with the committed
//! configuration (`deploy/nginx`), and the recipes of `docs/api.md` run as
//! written against a running server.

mod cluster;
mod proxy;
mod recipes;
mod rolling_restart;
