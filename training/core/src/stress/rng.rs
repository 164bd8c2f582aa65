//! Fast, seedable random numbers for the simulation: xoshiro256++ seeded through SplitMix64, a
//! 128-block ziggurat for normals (Doornik's ZIGNOR) and Marsaglia-Tsang gammas for the Student-t
//! mixing variable. No RNG crate: the stream for a seed never changes with a dependency update.

use std::sync::LazyLock;

/// `2^-53`.
const INV_2_53: f64 = 1.0 / 9_007_199_254_740_992.0;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman and Vigna).
#[derive(Debug, Clone)]
pub struct Xoshiro {
    s: [u64; 4],
}

impl Xoshiro {
    /// The generator of stream `stream` (a chunk of paths) for `seed`: streams are seeded
    /// independently, so results do not depend on how chunks are spread over threads.
    #[must_use]
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut mix = stream;
        let mut state = seed ^ splitmix(&mut mix);
        let s = [
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
            splitmix(&mut state),
        ];
        Self { s }
    }

    /// 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.s;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform in the open interval (0, 1), safe for `ln`.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * INV_2_53
    }
}

/// Blocks of the ziggurat.
const BLOCKS: usize = 128;
/// Start of the tail.
const ZIG_R: f64 = 3.442_619_855_899;
/// Area of each block.
const ZIG_V: f64 = 9.912_563_035_262_17e-3;

struct Ziggurat {
    /// Block edges; `x[0]` is the base block's pseudo-width `V / f(R)`, `x[128] = 0`.
    x: [f64; BLOCKS + 1],
    /// `x[i + 1] / x[i]`: below it a point is inside the block's rectangle.
    ratio: [f64; BLOCKS],
}

static ZIGGURAT: LazyLock<Ziggurat> = LazyLock::new(|| {
    let mut x = [0.0; BLOCKS + 1];
    let mut f = (-0.5 * ZIG_R * ZIG_R).exp();
    x[0] = ZIG_V / f;
    x[1] = ZIG_R;
    for i in 2..BLOCKS {
        x[i] = (-2.0 * (ZIG_V / x[i - 1] + f).ln()).sqrt();
        f = (-0.5 * x[i] * x[i]).exp();
    }
    x[BLOCKS] = 0.0;
    let mut ratio = [0.0; BLOCKS];
    for i in 0..BLOCKS {
        ratio[i] = x[i + 1] / x[i];
    }
    Ziggurat { x, ratio }
});

/// The draws the simulation needs, on one stream.
#[derive(Clone)]
pub struct Sampler {
    rng: Xoshiro,
    zig: &'static Ziggurat,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("rng", &self.rng)
            .finish_non_exhaustive()
    }
}

/// Precomputed constants of a `Gamma(shape, 1)` draw, `shape >= 1`.
#[derive(Debug, Clone, Copy)]
pub struct GammaShape {
    d: f64,
    c: f64,
}

impl GammaShape {
    /// Constants for `shape` (>= 1).
    #[must_use]
    pub fn new(shape: f64) -> Self {
        let d = shape - 1.0 / 3.0;
        Self {
            d,
            c: 1.0 / (9.0 * d).sqrt(),
        }
    }
}

impl Sampler {
    /// The sampler of `stream` for `seed`.
    #[must_use]
    pub fn stream(seed: u64, stream: u64) -> Self {
        Self {
            rng: Xoshiro::stream(seed, stream),
            zig: &ZIGGURAT,
        }
    }

    /// Uniform in (0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        self.rng.uniform()
    }

    /// Standard normal (ziggurat).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        loop {
            let bits = self.rng.next_u64();
            let i = (bits & 0x7F) as usize;
            // 53 high bits: u uniform in [-1, 1), independent of the block index.
            let u = (bits >> 11) as f64 * (2.0 * INV_2_53) - 1.0;
            if u.abs() < self.zig.ratio[i] {
                return u * self.zig.x[i];
            }
            if i == 0 {
                return self.tail(u < 0.0);
            }
            let x = u * self.zig.x[i];
            let (xi, xn) = (self.zig.x[i], self.zig.x[i + 1]);
            let f0 = (-0.5 * (xi * xi - x * x)).exp();
            let f1 = (-0.5 * (xn * xn - x * x)).exp();
            if f1 + self.rng.uniform() * (f0 - f1) < 1.0 {
                return x;
            }
        }
    }

    #[cold]
    fn tail(&mut self, negative: bool) -> f64 {
        loop {
            let x = self.rng.uniform().ln() / ZIG_R;
            let y = self.rng.uniform().ln();
            if -2.0 * y >= x * x {
                return if negative { x - ZIG_R } else { ZIG_R - x };
            }
        }
    }

    /// `Gamma(shape, 1)` for `shape >= 1` (Marsaglia and Tsang, 2000).
    #[inline]
    pub fn gamma(&mut self, g: GammaShape) -> f64 {
        loop {
            let x = self.normal();
            let v = 1.0 + g.c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.rng.uniform();
            let x2 = x * x;
            if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + g.d * (1.0 - v + v.ln()) {
                return g.d * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(draws: &[f64]) -> (f64, f64, f64) {
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let kurt = draws.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n / (var * var);
        (mean, var, kurt)
    }

    #[test]
    fn normals_have_normal_moments_and_tails() {
        let mut s = Sampler::stream(7, 0);
        let draws: Vec<f64> = (0..1_000_000).map(|_| s.normal()).collect();
        let (mean, var, kurt) = moments(&draws);
        assert!(mean.abs() < 0.005, "{mean}");
        assert!((var - 1.0).abs() < 0.005, "{var}");
        assert!((kurt - 3.0).abs() < 0.05, "{kurt}");
        // P(|Z| > 2.5758) = 1%, P(Z > 3.4426) (the tail) = 0.0288%.
        let share = |t: f64| draws.iter().filter(|x| x.abs() > t).count() as f64 / 1e6;
        assert!((share(2.575_829) - 0.01).abs() < 0.0006, "{}", share(2.575_829));
        assert!((share(ZIG_R) - 0.000_576).abs() < 0.000_1, "{}", share(ZIG_R));
    }

    #[test]
    fn gammas_have_their_mean_and_variance() {
        let mut s = Sampler::stream(3, 1);
        for shape in [1.0, 2.0, 2.5, 10.0] {
            let g = GammaShape::new(shape);
            let draws: Vec<f64> = (0..400_000).map(|_| s.gamma(g)).collect();
            let (mean, var, _) = moments(&draws);
            assert!((mean / shape - 1.0).abs() < 0.01, "{shape}: {mean}");
            assert!((var / shape - 1.0).abs() < 0.03, "{shape}: {var}");
        }
    }

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = {
            let mut r = Xoshiro::stream(1, 0);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = Xoshiro::stream(1, 0);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut other = Xoshiro::stream(1, 1);
        assert_ne!(a[0], other.next_u64());
    }
}
