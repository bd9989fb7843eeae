-- The roles Flowdeck's migrations expect (run once, by the postgres image, as the owner `flowdeck`).
-- flowdeck_app: no login, no RLS bypass, owns nothing; the migrations grant it what it may do.
-- flowdeck_system: flowdeck_app plus the cross-tenant scans (the scheduler's claim, the worker's
--   instance-tenant check); the migrations grant them to it alone.
-- flowdeck_api: the log-in role of the api, a member of flowdeck_app only.
-- flowdeck_worker: the log-in role of the worker and the scheduler, a member of flowdeck_system.
CREATE ROLE flowdeck_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE flowdeck_system NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE IN ROLE flowdeck_app;
CREATE ROLE flowdeck_api LOGIN PASSWORD 'flowdeck-api' NOSUPERUSER NOBYPASSRLS IN ROLE flowdeck_app;
CREATE ROLE flowdeck_worker LOGIN PASSWORD 'flowdeck-worker' NOSUPERUSER NOBYPASSRLS IN ROLE flowdeck_system;
