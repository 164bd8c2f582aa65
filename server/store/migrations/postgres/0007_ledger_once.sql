-- One ledger entry per asset and origin, whatever model made it: two replicas serving different
-- model ids (one recalibrated, one not yet) both recorded the day's origin, and every figure
-- and the gate counted it twice. The entry of the smallest model id is kept where one was
-- recorded twice.
DELETE FROM ledger WHERE EXISTS (
    SELECT 1 FROM ledger AS other
    WHERE other.asset = ledger.asset AND other.origin = ledger.origin AND other.model_id < ledger.model_id
);
CREATE UNIQUE INDEX ledger_asset_origin ON ledger (asset, origin);
