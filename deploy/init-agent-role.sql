-- The role ColdQuery connects as: reads everything in public, writes only what it should.
CREATE ROLE coldquery_agent LOGIN PASSWORD 'agent-password-change-me'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
GRANT CONNECT ON DATABASE app TO coldquery_agent;
GRANT USAGE ON SCHEMA public TO coldquery_agent;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO coldquery_agent;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO coldquery_agent;
GRANT pg_read_all_stats TO coldquery_agent;
