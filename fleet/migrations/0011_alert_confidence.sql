-- Every verdict carries how sure it is (docs/alerts.md, "Stays, then assignment").
-- visit.confidence: 1 for a stay whose fixes lie in the fence, less for a drifted stay
-- (fixes beside a point whose fence the track entered on the way in or out).
-- ledger_entry.confidence: of the verdict; its basis is in ledger_entry.evidence.
ALTER TABLE visit
    ADD COLUMN confidence double precision NOT NULL DEFAULT 1
        CHECK (confidence >= 0 AND confidence <= 1);
ALTER TABLE ledger_entry
    ADD COLUMN confidence double precision NOT NULL DEFAULT 1
        CHECK (confidence >= 0 AND confidence <= 1);
