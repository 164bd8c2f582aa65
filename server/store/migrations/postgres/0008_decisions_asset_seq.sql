-- One asset's decisions in log order: the per-asset page (`GET /v1/decisions?asset=`, the
-- per-asset export) walks this index from its cursor instead of reading every decision of the
-- asset in the time range and sorting them for each page (quadratic over an export). Additive:
-- an older build ignores it.
CREATE INDEX decisions_asset_seq ON decisions (asset, seq);
