//! Portcullis: an MCP gateway with built-in identity.
//!
//! Data flows top to bottom through the modules: `config` compiles the TOML into a
//! snapshot; `targets` keeps one session per upstream; `catalog` merges their tools under
//! gateway names; `server` is the MCP front door that routes each call; `telemetry` records
//! every decision; `demo` is the quickstart's demo MCP server (`portcullis demo-upstream`)
//! and demo OAuth provider (`portcullis demo-provider`).
//! docs/ describes each part for users.
#![forbid(unsafe_code)]

pub mod auth_server;
pub mod catalog;
pub mod cause;
pub mod cli;
pub mod config;
pub mod consent;
pub mod demo;
pub mod events;
pub mod identity;
pub mod inbound;
pub mod input;
pub mod outbound;
pub mod policy;
pub mod request_state;
pub mod runtime;
pub mod server;
pub mod targets;
pub mod telemetry;
pub mod vault;
pub mod words;
