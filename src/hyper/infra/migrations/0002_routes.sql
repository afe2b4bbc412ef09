-- The router's Route results: a route's summary (the RouteResponse without its assignments, as
-- the JSON text the file store writes) and its assignments, one row per pair in dataset order.
-- A route is written in one transaction, so a reader sees all of it or none of it.

CREATE TABLE routes (
    route_id text PRIMARY KEY CHECK (route_id ~ '^[0-9a-f]{32}$'),
    -- What the assignments refer to: 8 bytes a row instead of the 33 of the route id, which
    -- halves the time COPY spends on the primary key's index (measured with a million rows).
    route_key bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    summary text NOT NULL,
    -- The route's total, kept here so that a page's token is checked without counting rows.
    n_assignments bigint NOT NULL CHECK (n_assignments >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Pages are read by position from the primary key's index: WHERE route_key = ? AND position >= ?
-- ORDER BY position LIMIT ?. No foreign key: its check, a trigger per row, took three quarters of
-- the time to COPY a million rows; the store writes a route's rows and its routes row in one
-- transaction instead, and whatever deletes a route deletes both.
CREATE TABLE route_assignments (
    route_key bigint NOT NULL,
    position bigint NOT NULL CHECK (position >= 0),
    id text NOT NULL,
    route text NOT NULL,
    gain double precision NOT NULL,
    cost double precision NOT NULL,
    PRIMARY KEY (route_key, position)
);
