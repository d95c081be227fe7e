-- Why a planning job failed, said once for every language (fleet/refusal.py): a stable
-- code and the values its words are filled with; `message` keeps the English text.
ALTER TABLE plan_job
    ADD COLUMN error_code   text,
    ADD COLUMN error_params jsonb;
