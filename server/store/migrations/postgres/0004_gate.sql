-- The champion/challenger gate's switches: at the daily origin it decided (Unix ms), the policy
-- switched to (`model` or `fallback_har`) and why. The latest is the policy served.
CREATE TABLE gate_switches (
    at BIGINT PRIMARY KEY,
    policy TEXT NOT NULL,
    reason TEXT NOT NULL
);
