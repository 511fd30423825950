-- The full lifecycle: when each stage was entered, Sales' last action and the SQL SLA,
-- identity merges (a merged lead points at the lead that absorbed it), revenue per currency.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS sal_at timestamptz;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS recycled_at timestamptz;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS disqualified_at timestamptz;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS last_sales_action_at timestamptz;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS sla_breached_at timestamptz;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS merged_into text;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS merged_from jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS aliases jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS revenue_by_currency jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX IF NOT EXISTS leads_merged_into_idx ON leads (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_sla_breached_idx ON leads (sla_breached_at) WHERE sla_breached_at IS NOT NULL;
