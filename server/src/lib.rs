//! rclaude-server: sessions, usage metering, billing, API tokens and live events over HTTP
//! (axum) with SQLite or PostgreSQL (sqlx). See docs/server.md.

pub mod admin;
pub mod app;
pub mod auth;
pub mod billing;
pub mod boundary;
pub mod checkpoint_store;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod events;
pub mod events_listen;
pub mod guardians;
pub mod limits;
pub mod listen;
pub mod managed;
pub mod metering;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod redact;
pub mod responses;
pub mod revocations;
pub mod routes;
pub mod sandboxes;
pub mod server;
pub mod state;
pub mod storage;
pub mod stripe;
pub mod token;
pub mod validate;
pub mod ws;
