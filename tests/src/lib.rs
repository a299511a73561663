//! ColdQuery's test support: in-memory fakes of the core traits and a real-PostgreSQL harness.
//!
//! - [`fakes`]: [`fakes::FakeExecutor`] and [`fakes::FakeSessions`], for unit tests of the tools.
//! - [`harness`]: [`harness::test_db`], a fresh database per test on a throwaway cluster (or on
//!   the server named by `COLDQUERY_TEST_DATABASE_URL`).
//! - [`figures`]: numbers a test measured, printed by `cargo xtask ci`.
//! - [`proxy`]: [`proxy::FaultProxy`], a loopback TCP proxy that stalls, resets or slows on command.

pub mod fakes;
pub mod figures;
pub mod harness;
pub mod proxy;
