-- The roles Flowdeck's migrations expect (run once, by the postgres image, as the owner `flowdeck`).
-- flowdeck_app: no login, no RLS bypass, owns nothing; the migrations grant it what it may do.
-- flowdeck_api: the log-in role of the api, worker and scheduler, a member of flowdeck_app.
CREATE ROLE flowdeck_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE flowdeck_api LOGIN PASSWORD 'flowdeck-api' NOSUPERUSER NOBYPASSRLS IN ROLE flowdeck_app;
