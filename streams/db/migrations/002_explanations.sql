-- Explanations: every kept interest contribution with its decayed value, and the fit reasons.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS contributions jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS fit_reasons jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS interest_at timestamptz;
