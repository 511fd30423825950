-- The shared Sales/Marketing KPIs as views over the projection, campaign spend, and a read-only
-- analyst role.
--
-- Every KPI view has the same long shape: grain ('day', 'week', 'month', or 'all': one period
-- dated 1970-01-01 holding everything), period (the first day of the period, UTC; weeks start on
-- Monday), dimension ('all', 'origin', 'source', 'campaign',
-- 'temperature', 'quality') and value (the dimension's value; '(all)' for 'all', '(none)' when
-- unknown), then the measures. Filter on grain and dimension:
--   SELECT period, value, leads, mql_rate FROM kpi_funnel
--    WHERE grain = 'month' AND dimension = 'campaign' ORDER BY period, value;
--
-- A lead counts once it is known (has an email), was created by Sales, or has moved past iql;
-- anonymous visitors are 'visitors'. Ids merged into another lead never count.

CREATE TABLE IF NOT EXISTS campaign_costs (
    campaign      text NOT NULL,
    grain         text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start  date NOT NULL,
    currency      text NOT NULL,
    amount        numeric(14, 2) NOT NULL CHECK (amount >= 0),
    source        text NOT NULL DEFAULT 'csv',
    imported_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign, grain, period_start, currency)
);

-- Every purchase (an Order Completed event or a sales 'won'), for revenue by the period it came in.
CREATE TABLE IF NOT EXISTS lead_orders (
    lead_id      text NOT NULL,
    order_id     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    amount       numeric(14, 2) NOT NULL,
    currency     text NOT NULL,
    source       text NOT NULL,
    PRIMARY KEY (lead_id, order_id)
);
CREATE INDEX IF NOT EXISTS lead_orders_occurred_at_idx ON lead_orders (occurred_at);

CREATE OR REPLACE VIEW kpi_grains (grain, rank) AS
    VALUES ('day', 1), ('week', 2), ('month', 3), ('all', 4);

-- The first day of the period of grain that holds ts (UTC); grain 'all' is one period, 1970-01-01.
CREATE OR REPLACE FUNCTION kpi_period(grain text, ts timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN grain = 'all' THEN DATE '1970-01-01'
               ELSE (date_trunc(grain, ts AT TIME ZONE 'UTC'))::date END $$;
CREATE OR REPLACE FUNCTION kpi_period(grain text, d date) RETURNS date
    LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN grain = 'all' THEN DATE '1970-01-01'
               ELSE (date_trunc(grain, d::timestamp))::date END $$;

-- Which dimension a GROUPING SETS row is for, and its value (grouping() is 0 for the grouped one).
CREATE OR REPLACE FUNCTION kpi_dimension(g_origin int, g_source int, g_campaign int,
                                         g_temperature int, g_quality int) RETURNS text
    LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN g_origin = 0 THEN 'origin' WHEN g_source = 0 THEN 'source'
               WHEN g_campaign = 0 THEN 'campaign' WHEN g_temperature = 0 THEN 'temperature'
               WHEN g_quality = 0 THEN 'quality' ELSE 'all' END $$;
CREATE OR REPLACE FUNCTION kpi_value(g_origin int, g_source int, g_campaign int,
                                     g_temperature int, g_quality int, origin text, source text,
                                     campaign text, temperature text, quality text) RETURNS text
    LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN g_origin = 0 THEN origin WHEN g_source = 0 THEN source
               WHEN g_campaign = 0 THEN campaign WHEN g_temperature = 0 THEN temperature
               WHEN g_quality = 0 THEN quality ELSE '(all)' END $$;

CREATE OR REPLACE VIEW lead_facts AS
WITH moves AS (
    SELECT lead_id,
           max(CASE to_stage WHEN 'mql' THEN 1 WHEN 'sal' THEN 2 WHEN 'sql' THEN 3
                             WHEN 'customer' THEN 4 ELSE 0 END) AS furthest,
           min(occurred_at) FILTER (WHERE to_stage = 'mql') AS first_mql_at,
           min(occurred_at) FILTER (WHERE to_stage = 'sql') AS first_sql_at,
           min(occurred_at) FILTER (WHERE to_stage = 'customer') AS first_customer_at
      FROM lead_transitions GROUP BY lead_id
)
SELECT l.lead_id,
       l.origin,
       coalesce(nullif(l.first_touch_source, ''), '(none)') AS source,
       coalesce(nullif(l.first_touch_campaign, ''), '(none)') AS campaign,
       l.temperature,
       l.quality,
       l.stage,
       coalesce(l.first_seen_at, l.stage_entered_at, l.updated_at) AS first_seen_at,
       (l.email IS NOT NULL OR l.origin = 'sales' OR l.stage <> 'iql'
        OR coalesce(m.furthest, 0) > 0) AS is_lead,
       greatest(coalesce(m.furthest, 0), CASE l.stage WHEN 'mql' THEN 1 WHEN 'sal' THEN 2
                WHEN 'sql' THEN 3 WHEN 'customer' THEN 4 ELSE 0 END) AS furthest,
       m.first_mql_at, m.first_sql_at, m.first_customer_at,
       l.orders, l.revenue, l.revenue_by_currency, l.interest_score, l.fit_score
  FROM leads l LEFT JOIN moves m USING (lead_id)
 WHERE l.merged_into IS NULL;

-- Marketing: new leads per period of first touch, and how far that cohort got.
CREATE OR REPLACE VIEW kpi_funnel AS
WITH c AS (
    SELECT g.grain, kpi_period(g.grain, f.first_seen_at) AS period,
           f.origin, f.source, f.campaign, f.temperature, f.quality,
           count(*) FILTER (WHERE NOT f.is_lead) AS visitors,
           count(*) FILTER (WHERE f.is_lead) AS leads,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 1) AS mqls,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 3) AS sqls,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 4) AS customers,
           grouping(f.origin) AS g_origin, grouping(f.source) AS g_source,
           grouping(f.campaign) AS g_campaign, grouping(f.temperature) AS g_temperature,
           grouping(f.quality) AS g_quality
      FROM lead_facts f CROSS JOIN kpi_grains g
     GROUP BY g.grain, 2, GROUPING SETS ((), (f.origin), (f.source), (f.campaign),
                                        (f.temperature), (f.quality))
)
SELECT grain, period,
       kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       visitors, leads, mqls, sqls, customers,
       round(mqls::numeric / nullif(leads, 0), 4) AS mql_rate,
       round(sqls::numeric / nullif(mqls, 0), 4) AS sql_rate,
       round(customers::numeric / nullif(sqls, 0), 4) AS customer_rate,
       round(customers::numeric / nullif(leads, 0), 4) AS lead_to_customer_rate
  FROM c;

-- Leads per stage now.
CREATE OR REPLACE VIEW kpi_stages AS
WITH c AS (
    SELECT f.stage, f.origin, f.source, f.campaign, f.temperature, f.quality, count(*) AS leads,
           grouping(f.origin) AS g_origin, grouping(f.source) AS g_source,
           grouping(f.campaign) AS g_campaign, grouping(f.temperature) AS g_temperature,
           grouping(f.quality) AS g_quality
      FROM lead_facts f WHERE f.is_lead
     GROUP BY f.stage, GROUPING SETS ((), (f.origin), (f.source), (f.campaign), (f.temperature),
                                      (f.quality))
)
SELECT kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       stage, leads
  FROM c;

-- Moves into each stage per period of the move (a lead entering sql twice counts twice in
-- entries, once in leads).
CREATE OR REPLACE VIEW kpi_stage_entries AS
WITH c AS (
    SELECT g.grain, kpi_period(g.grain, t.occurred_at) AS period, t.to_stage AS stage,
           f.origin, f.source, f.campaign, f.temperature, f.quality,
           count(*) AS entries, count(DISTINCT t.lead_id) AS leads,
           grouping(f.origin) AS g_origin, grouping(f.source) AS g_source,
           grouping(f.campaign) AS g_campaign, grouping(f.temperature) AS g_temperature,
           grouping(f.quality) AS g_quality
      FROM lead_transitions t JOIN lead_facts f USING (lead_id) CROSS JOIN kpi_grains g
     WHERE f.is_lead
     GROUP BY g.grain, 2, t.to_stage, GROUPING SETS ((), (f.origin), (f.source), (f.campaign),
                                                    (f.temperature), (f.quality))
)
SELECT grain, period,
       kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       stage, entries, leads
  FROM c;

-- Every stay in a stage that has ended: entered (first touch, or a move in), left (the next move).
CREATE OR REPLACE VIEW lead_stays AS
WITH t AS (
    SELECT lt.lead_id, lt.from_stage, lt.to_stage, lt.occurred_at, lt.trigger,
           lag(lt.occurred_at) OVER w AS prev_at, row_number() OVER w AS n
      FROM lead_transitions lt
    WINDOW w AS (PARTITION BY lt.lead_id ORDER BY lt.version)
)
SELECT t.lead_id, t.from_stage AS stage,
       CASE WHEN t.n = 1 THEN f.first_seen_at ELSE t.prev_at END AS entered_at,
       t.occurred_at AS left_at, t.to_stage AS next_stage, t.trigger
  FROM t JOIN lead_facts f USING (lead_id);

CREATE OR REPLACE VIEW kpi_time_in_stage AS
WITH s AS (
    SELECT s.*, extract(epoch FROM s.left_at - s.entered_at) / 3600.0 AS hours,
           f.origin, f.source, f.campaign, f.temperature, f.quality
      FROM lead_stays s JOIN lead_facts f USING (lead_id)
     WHERE f.is_lead AND s.left_at >= s.entered_at
), c AS (
    SELECT g.grain, kpi_period(g.grain, s.left_at) AS period, s.stage,
           s.origin, s.source, s.campaign, s.temperature, s.quality,
           count(*) AS stays,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.hours) AS median_hours,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY s.hours) AS p90_hours,
           avg(s.hours) AS avg_hours,
           grouping(s.origin) AS g_origin, grouping(s.source) AS g_source,
           grouping(s.campaign) AS g_campaign, grouping(s.temperature) AS g_temperature,
           grouping(s.quality) AS g_quality
      FROM s CROSS JOIN kpi_grains g
     GROUP BY g.grain, 2, s.stage, GROUPING SETS ((), (s.origin), (s.source), (s.campaign),
                                                 (s.temperature), (s.quality))
)
SELECT grain, period,
       kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       stage, stays, round(median_hours::numeric, 2) AS median_hours,
       round(p90_hours::numeric, 2) AS p90_hours, round(avg_hours::numeric, 2) AS avg_hours
  FROM c;

-- Sales: deals won and lost per period of the outcome; close rate; the sales cycle of every won
-- deal (from the SQL it was won from, or the first SQL, to the purchase).
CREATE OR REPLACE VIEW deal_outcomes AS
SELECT t.lead_id, t.occurred_at,
       CASE WHEN t.to_stage = 'customer' THEN 'won' ELSE 'lost' END AS outcome,
       CASE WHEN t.to_stage = 'customer' THEN (
           SELECT max(s.occurred_at) FROM lead_transitions s
            WHERE s.lead_id = t.lead_id AND s.to_stage = 'sql' AND s.version < t.version)
       END AS sql_at
  FROM lead_transitions t
 WHERE t.to_stage = 'customer' OR t.trigger = 'lost';

CREATE OR REPLACE VIEW kpi_sales AS
WITH d AS (
    SELECT d.*, extract(epoch FROM d.occurred_at - d.sql_at) / 86400.0 AS cycle_days,
           f.origin, f.source, f.campaign, f.temperature, f.quality
      FROM deal_outcomes d JOIN lead_facts f USING (lead_id)
), c AS (
    SELECT g.grain, kpi_period(g.grain, d.occurred_at) AS period,
           d.origin, d.source, d.campaign, d.temperature, d.quality,
           count(*) FILTER (WHERE d.outcome = 'won') AS won,
           count(*) FILTER (WHERE d.outcome = 'lost') AS lost,
           count(d.cycle_days) AS cycles,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY d.cycle_days) AS median_days,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY d.cycle_days) AS p90_days,
           avg(d.cycle_days) AS avg_days,
           grouping(d.origin) AS g_origin, grouping(d.source) AS g_source,
           grouping(d.campaign) AS g_campaign, grouping(d.temperature) AS g_temperature,
           grouping(d.quality) AS g_quality
      FROM d CROSS JOIN kpi_grains g
     GROUP BY g.grain, 2, GROUPING SETS ((), (d.origin), (d.source), (d.campaign),
                                        (d.temperature), (d.quality))
)
SELECT grain, period,
       kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       won, lost, round(won::numeric / nullif(won + lost, 0), 4) AS close_rate,
       cycles, round(median_days::numeric, 2) AS cycle_median_days,
       round(p90_days::numeric, 2) AS cycle_p90_days, round(avg_days::numeric, 2) AS cycle_avg_days
  FROM c;

-- Revenue per currency by the period each order came in (repeat orders count when they come);
-- customers: distinct leads that ordered in the period. Orders of ids merged into another lead
-- are counted once, under the lead that absorbed them.
CREATE OR REPLACE VIEW kpi_revenue AS
WITH r AS (
    SELECT o.lead_id, o.occurred_at, o.amount, o.currency,
           f.origin, f.source, f.campaign, f.temperature, f.quality
      FROM lead_orders o JOIN lead_facts f USING (lead_id)
), c AS (
    SELECT g.grain, kpi_period(g.grain, r.occurred_at) AS period, r.currency,
           r.origin, r.source, r.campaign, r.temperature, r.quality,
           count(DISTINCT r.lead_id) AS customers, count(*) AS orders, sum(r.amount) AS revenue,
           grouping(r.origin) AS g_origin, grouping(r.source) AS g_source,
           grouping(r.campaign) AS g_campaign, grouping(r.temperature) AS g_temperature,
           grouping(r.quality) AS g_quality
      FROM r CROSS JOIN kpi_grains g
     GROUP BY g.grain, 2, r.currency, GROUPING SETS ((), (r.origin), (r.source), (r.campaign),
                                                    (r.temperature), (r.quality))
)
SELECT grain, period,
       kpi_dimension(g_origin, g_source, g_campaign, g_temperature, g_quality) AS dimension,
       kpi_value(g_origin, g_source, g_campaign, g_temperature, g_quality,
                 origin, source, campaign, temperature, quality) AS value,
       currency, customers, orders, revenue
  FROM c;

-- Cost per lead and per customer, per campaign and currency. Spend recorded for a period counts
-- in every grain at least as long as its own (a month's spend is not split into days).
CREATE OR REPLACE VIEW kpi_costs AS
WITH spend AS (
    SELECT g.grain, kpi_period(g.grain, cc.period_start) AS period, cc.campaign,
           cc.currency, sum(cc.amount) AS spend
      FROM campaign_costs cc
      JOIN kpi_grains own ON own.grain = cc.grain
      JOIN kpi_grains g ON g.rank >= own.rank
     GROUP BY 1, 2, 3, 4
), cohort AS (
    SELECT g.grain, kpi_period(g.grain, f.first_seen_at) AS period,
           f.campaign, count(*) AS leads, count(*) FILTER (WHERE f.furthest >= 4) AS customers
      FROM lead_facts f CROSS JOIN kpi_grains g
     WHERE f.is_lead
     GROUP BY 1, 2, 3
)
SELECT s.grain, s.period, 'campaign'::text AS dimension, s.campaign AS value, s.currency,
       s.spend, coalesce(c.leads, 0) AS leads, coalesce(c.customers, 0) AS customers,
       round(s.spend / nullif(c.leads, 0), 2) AS cost_per_lead,
       round(s.spend / nullif(c.customers, 0), 2) AS cost_per_customer
  FROM spend s LEFT JOIN cohort c USING (grain, period, campaign);

-- A read-only role for analysts: SELECT on every table and view of this schema, now and later.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'funnel_analyst') THEN
        CREATE ROLE funnel_analyst LOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO funnel_analyst', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO funnel_analyst', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO funnel_analyst',
                   current_schema());
END
$$;
