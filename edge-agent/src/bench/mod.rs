//! The `outpost bench` benchmarks, one module each: `search` (latency over a synthetic or BEIR
//! index), `embed` (model throughput), `llm` (generation speed), `sync` (push and pull rates against a central Postgres)
//! and `http` (a load test of the agent). They share only what lies below them: `synth`
//! (synthetic vectors and texts) and `report` (percentiles); none imports another.

pub mod embed;
pub mod http;
pub mod llm;
pub mod report;
pub mod search;
pub mod sync;
pub mod synth;
