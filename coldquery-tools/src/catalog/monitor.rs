//! Monitoring and maintenance catalog queries (pg_monitor, pg_admin).
