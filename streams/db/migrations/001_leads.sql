-- The lead projection: the latest state per lead and every stage change.
CREATE TABLE IF NOT EXISTS leads (
    lead_id           text PRIMARY KEY,
    stage             text NOT NULL,
    interest_score    double precision NOT NULL,
    temperature       text NOT NULL,
    fit_score         double precision NOT NULL,
    quality           text NOT NULL,
    origin            text NOT NULL,
    email             text,
    company           text,
    first_touch_source   text,
    first_touch_medium   text,
    first_touch_campaign text,
    first_seen_at     timestamptz,
    last_activity_at  timestamptz,
    stage_entered_at  timestamptz,
    mql_at            timestamptz,
    sql_at            timestamptz,
    customer_at       timestamptz,
    orders            integer NOT NULL DEFAULT 0,
    revenue           numeric(14, 2) NOT NULL DEFAULT 0,
    events_count      integer NOT NULL DEFAULT 0,
    model_name        text,
    model_version     text,
    traits            jsonb NOT NULL DEFAULT '{}'::jsonb,
    reasons           jsonb NOT NULL DEFAULT '[]'::jsonb,
    version           bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS leads_stage_idx ON leads (stage);
CREATE INDEX IF NOT EXISTS leads_temperature_quality_idx ON leads (temperature, quality);

CREATE TABLE IF NOT EXISTS lead_transitions (
    lead_id      text NOT NULL,
    version      bigint NOT NULL,
    from_stage   text NOT NULL,
    to_stage     text NOT NULL,
    trigger      text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    actor        text,
    reason       text,
    reasons      jsonb NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (lead_id, version)
);
CREATE INDEX IF NOT EXISTS lead_transitions_to_stage_idx ON lead_transitions (to_stage, occurred_at);
