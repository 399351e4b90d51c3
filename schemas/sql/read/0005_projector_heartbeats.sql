-- Each running projector says, about once a second, how far behind the log it is: 0 when its last poll
-- came back empty, else the age of the newest event it applied. The API's /ready reads this.
CREATE TABLE projector_heartbeats (
    member       text PRIMARY KEY,
    group_id     text NOT NULL,
    lag_seconds  double precision NOT NULL,
    beat_at      timestamptz NOT NULL DEFAULT now()
);
