//! The benchmark harness (`cargo run --release -p portcullis-bench`): a fast MCP upstream
//! ([`upstream`]), an MCP-aware load generator ([`client`], [`load`]), the processes it
//! starts ([`procs`]) and their meter ([`procstat`]). `src/main.rs` puts the gateways in front of the same upstream and reports;
//! docs/benchmarks.md explains the method and holds the figures.

pub mod client;
pub mod load;
pub mod procs;
pub mod procstat;
pub mod upstream;
