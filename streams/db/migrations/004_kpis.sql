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

-- Every lead once per dimension it is counted under: ('all', '(all)'), ('origin', 'sales'), ….
-- The KPI views group by (dimension, value), so each split is a plain GROUP BY.
CREATE OR REPLACE VIEW lead_dims AS
SELECT f.lead_id, d.dimension, d.value
  FROM lead_facts f
 CROSS JOIN LATERAL (VALUES ('all', '(all)'), ('origin', f.origin), ('source', f.source),
                            ('campaign', f.campaign), ('temperature', f.temperature),
                            ('quality', f.quality)) AS d (dimension, value);

-- Marketing: new leads per period of first touch, and how far that cohort got.
CREATE OR REPLACE VIEW kpi_funnel AS
WITH c AS (
    SELECT g.grain, kpi_period(g.grain, f.first_seen_at) AS period, d.dimension, d.value,
           count(*) FILTER (WHERE NOT f.is_lead) AS visitors,
           count(*) FILTER (WHERE f.is_lead) AS leads,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 1) AS mqls,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 3) AS sqls,
           count(*) FILTER (WHERE f.is_lead AND f.furthest >= 4) AS customers
      FROM lead_facts f JOIN lead_dims d USING (lead_id) CROSS JOIN kpi_grains g
     GROUP BY 1, 2, 3, 4
)
SELECT c.*,
       round(mqls::numeric / nullif(leads, 0), 4) AS mql_rate,
       round(sqls::numeric / nullif(mqls, 0), 4) AS sql_rate,
       round(customers::numeric / nullif(sqls, 0), 4) AS customer_rate,
       round(customers::numeric / nullif(leads, 0), 4) AS lead_to_customer_rate
  FROM c;

-- Leads per stage now.
CREATE OR REPLACE VIEW kpi_stages AS
SELECT d.dimension, d.value, f.stage, count(*) AS leads
  FROM lead_facts f JOIN lead_dims d USING (lead_id)
 WHERE f.is_lead
 GROUP BY 1, 2, 3;

-- Moves into each stage per period of the move (a lead entering sql twice counts twice in
-- entries, once in leads).
CREATE OR REPLACE VIEW kpi_stage_entries AS
SELECT g.grain, kpi_period(g.grain, t.occurred_at) AS period, d.dimension, d.value,
       t.to_stage AS stage, count(*) AS entries, count(DISTINCT t.lead_id) AS leads
  FROM lead_transitions t JOIN lead_facts f USING (lead_id) JOIN lead_dims d USING (lead_id)
 CROSS JOIN kpi_grains g
 WHERE f.is_lead
 GROUP BY 1, 2, 3, 4, 5;

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
       t.occurred_at AS left_at, t.to_stage AS next_stage, t.trigger, f.is_lead
  FROM t JOIN lead_facts f USING (lead_id);

CREATE OR REPLACE VIEW kpi_time_in_stage AS
WITH c AS (
    SELECT g.grain, kpi_period(g.grain, s.left_at) AS period, d.dimension, d.value, s.stage,
           count(*) AS stays,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.hours) AS median_hours,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY s.hours) AS p90_hours,
           avg(s.hours) AS avg_hours
      FROM (SELECT *, extract(epoch FROM left_at - entered_at) / 3600.0 AS hours
              FROM lead_stays WHERE is_lead AND left_at >= entered_at) s
      JOIN lead_dims d USING (lead_id) CROSS JOIN kpi_grains g
     GROUP BY 1, 2, 3, 4, 5
)
SELECT grain, period, dimension, value, stage, stays,
       round(median_hours::numeric, 2) AS median_hours,
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
WITH c AS (
    SELECT g.grain, kpi_period(g.grain, o.occurred_at) AS period, d.dimension, d.value,
           count(*) FILTER (WHERE o.outcome = 'won') AS won,
           count(*) FILTER (WHERE o.outcome = 'lost') AS lost,
           count(o.cycle_days) AS cycles,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY o.cycle_days) AS median_days,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY o.cycle_days) AS p90_days,
           avg(o.cycle_days) AS avg_days
      FROM (SELECT *, extract(epoch FROM occurred_at - sql_at) / 86400.0 AS cycle_days
              FROM deal_outcomes) o
      JOIN lead_dims d USING (lead_id) CROSS JOIN kpi_grains g
     GROUP BY 1, 2, 3, 4
)
SELECT grain, period, dimension, value, won, lost,
       round(won::numeric / nullif(won + lost, 0), 4) AS close_rate,
       cycles, round(median_days::numeric, 2) AS cycle_median_days,
       round(p90_days::numeric, 2) AS cycle_p90_days, round(avg_days::numeric, 2) AS cycle_avg_days
  FROM c;

-- Revenue per currency by the period each order came in (repeat orders count when they come);
-- customers: distinct leads that ordered in the period. Orders of ids merged into another lead
-- are counted once, under the lead that absorbed them (lead_dims has no merged ids).
CREATE OR REPLACE VIEW kpi_revenue AS
SELECT g.grain, kpi_period(g.grain, o.occurred_at) AS period, d.dimension, d.value, o.currency,
       count(DISTINCT o.lead_id) AS customers, count(*) AS orders, sum(o.amount) AS revenue
  FROM lead_orders o JOIN lead_dims d USING (lead_id) CROSS JOIN kpi_grains g
 GROUP BY 1, 2, 3, 4, 5;

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
