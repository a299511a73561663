//! Local PostgreSQL clusters started from the binaries on this machine, apart from the driver
//! code: [`local`] holds what every local cluster shares (finding `initdb` and `postgres`, the
//! settings, the watchdog that owns the server, reading its log), and is also what the test
//! harness starts its clusters with; [`ephemeral`] is the throwaway cluster with the demo schema
//! (`demo-schema.sql`) behind `--ephemeral`.

pub mod ephemeral;
pub mod local;
