-- automc schema: the `servers` table mc-router reads, and the trigger that tells it to re-read.
-- Idempotent: `mc-router automc init-db` may be run any number of times, also concurrently
-- (it takes a transaction-scoped advisory lock first). Routers only ever SELECT from it.
--
-- A row is a route when both `domain` and `address` are non-empty:
--   domain   the server address players type (matched case-insensitively)
--   address  the backend as host:port ([v6]:port for IPv6)
--   state    not read by mc-router; it fires the trigger and serves the control plane.

CREATE TABLE IF NOT EXISTS servers (
    name    TEXT PRIMARY KEY,
    domain  TEXT NOT NULL,
    address TEXT NOT NULL,
    state   TEXT NOT NULL DEFAULT 'stopped',
    UNIQUE (domain)
);

CREATE OR REPLACE FUNCTION automc_notify_routes_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('automc_routes_changed', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS automc_servers_route_notify ON servers;
CREATE TRIGGER automc_servers_route_notify
    AFTER INSERT OR UPDATE OF domain, address, state OR DELETE ON servers
    FOR EACH ROW EXECUTE FUNCTION automc_notify_routes_changed();

-- Not in the original seed: TRUNCATE fires no row trigger, so without this a TRUNCATE would
-- leave every router serving the old routes until its next reconnect.
DROP TRIGGER IF EXISTS automc_servers_truncate_notify ON servers;
CREATE TRIGGER automc_servers_truncate_notify
    AFTER TRUNCATE ON servers
    FOR EACH STATEMENT EXECUTE FUNCTION automc_notify_routes_changed();
