-- The role ColdQuery connects as (docs/SECURITY.md#least-privilege-role): it reads every table
-- in `public`, writes only the demo schema's orders, and holds no superuser, CREATEDB,
-- CREATEROLE, REPLICATION, pg_signal_backend or server-file privileges. Run it as a superuser
-- in the database ColdQuery serves (the postgres image runs it from
-- /docker-entrypoint-initdb.d in POSTGRES_DB). Change the password outside development.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coldquery_agent') THEN
        CREATE ROLE coldquery_agent LOGIN PASSWORD 'agent-password-change-me'
            NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO coldquery_agent', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO coldquery_agent;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO coldquery_agent;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO coldquery_agent;
-- Only the writes you intend: here, orders and their lines.
GRANT INSERT, UPDATE, DELETE ON orders, order_items TO coldquery_agent;
-- pg_monitor sees every backend's activity and statistics.
GRANT pg_read_all_stats TO coldquery_agent;
-- A backstop below ColdQuery's own limits, for any other client using this role.
ALTER ROLE coldquery_agent SET statement_timeout = '30s';
ALTER ROLE coldquery_agent SET idle_in_transaction_session_timeout = '35min';
