//! Introspection catalog queries (pg_schema).
