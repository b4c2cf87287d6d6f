//! What `shardproxy bench` sends: which keys (uniform, Zipf, or one hot
//! tenant with a share of the traffic) and which operations in which
//! proportions (point reads, point writes, multi-row inserts, cross-shard
//! reads), drawn from a seeded generator so two targets get the same stream.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

/// How keys are drawn from `1..=rows`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Keys {
    Uniform,
    /// Key `r` with probability proportional to `1 / r^s`.
    Zipf {
        s: f64,
    },
    /// `key` with probability `share`, the others uniformly.
    HotTenant {
        share: f64,
        key: i64,
    },
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// `SELECT v FROM bench_kv WHERE k = $1`
    Read,
    /// `UPDATE bench_kv SET v = v + 1 WHERE k = $1`
    Write,
    /// `INSERT INTO bench_log … VALUES (…), …` with `insert_rows` keys
    Insert,
    /// `SELECT count(*), max(v) FROM bench_kv WHERE k IN (…)` with `cross_keys` keys
    Cross,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Read, Op::Write, Op::Insert, Op::Cross];

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Insert => "insert",
            Op::Cross => "cross",
        }
    }
}

/// Relative weights of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub insert: u32,
    pub cross: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            read: 100,
            write: 0,
            insert: 0,
            cross: 0,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `read=90,write=10` (names read, write, insert, cross; missing ones are 0).
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut m = Mix {
            read: 0,
            write: 0,
            insert: 0,
            cross: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected name=weight, e.g. read=90"))?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("'{part}': the weight must be a whole number"))?;
            match name.trim() {
                "read" => m.read = w,
                "write" => m.write = w,
                "insert" => m.insert = w,
                "cross" => m.cross = w,
                other => {
                    return Err(format!(
                        "'{other}' is not an operation (read, write, insert, cross)"
                    ))
                }
            }
        }
        if m.read + m.write + m.insert + m.cross == 0 {
            return Err("the mix needs at least one weight above 0".into());
        }
        Ok(m)
    }
}

/// Draws operations and keys for one connection.
pub struct Generator {
    rng: SmallRng,
    keys: Keys,
    rows: i64,
    zipf: Option<Zipf<f64>>,
    mix: [(Op, u32); 4],
    mix_total: u32,
}

impl Generator {
    /// The generator of connection `conn`; the same seed and connection
    /// give the same stream.
    pub fn new(keys: Keys, rows: i64, mix: Mix, seed: u64, conn: u64) -> Result<Generator, String> {
        if rows < 1 {
            return Err("--rows must be at least 1".into());
        }
        let zipf = match keys {
            Keys::Zipf { s } => {
                Some(Zipf::new(rows as u64, s).map_err(|e| format!("zipf --s {s}: {e}"))?)
            }
            _ => None,
        };
        if let Keys::HotTenant { share, .. } = keys {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!(
                    "hot-tenant --share {share}: must be between 0 and 1"
                ));
            }
        }
        let mix = [
            (Op::Read, mix.read),
            (Op::Write, mix.write),
            (Op::Insert, mix.insert),
            (Op::Cross, mix.cross),
        ];
        Ok(Generator {
            rng: SmallRng::seed_from_u64(seed ^ conn.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            keys,
            rows,
            zipf,
            mix_total: mix.iter().map(|m| m.1).sum(),
            mix,
        })
    }

    pub fn key(&mut self) -> i64 {
        match self.keys {
            Keys::Uniform => self.rng.gen_range(1..=self.rows),
            Keys::Zipf { .. } => {
                let z = self.zipf.as_ref().expect("built for zipf");
                (z.sample(&mut self.rng) as i64).clamp(1, self.rows)
            }
            Keys::HotTenant { share, key } => {
                if self.rng.gen_bool(share) {
                    key
                } else {
                    self.rng.gen_range(1..=self.rows)
                }
            }
        }
    }

    pub fn op(&mut self) -> Op {
        let mut r = self.rng.gen_range(0..self.mix_total);
        for (op, w) in self.mix {
            if r < w {
                return op;
            }
            r -= w;
        }
        Op::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_bad_ones_say_why() {
        let m: Mix = "read=90, write=10".parse().unwrap();
        assert_eq!((m.read, m.write, m.insert, m.cross), (90, 10, 0, 0));
        assert!("read=0"
            .parse::<Mix>()
            .unwrap_err()
            .contains("at least one"));
        assert!("scan=1"
            .parse::<Mix>()
            .unwrap_err()
            .contains("not an operation"));
        assert!("read".parse::<Mix>().unwrap_err().contains("name=weight"));
    }

    #[test]
    fn keys_follow_their_distribution() {
        let n = 20_000;
        let mut g = Generator::new(
            Keys::HotTenant {
                share: 0.3,
                key: 42,
            },
            1000,
            Mix::default(),
            1,
            0,
        )
        .unwrap();
        let hot = (0..n).filter(|_| g.key() == 42).count() as f64 / n as f64;
        assert!((hot - 0.3).abs() < 0.02, "{hot}");
        let mut z = Generator::new(Keys::Zipf { s: 1.1 }, 1000, Mix::default(), 1, 0).unwrap();
        let keys: Vec<i64> = (0..n).map(|_| z.key()).collect();
        assert!(keys.iter().all(|k| (1..=1000).contains(k)));
        let ones = keys.iter().filter(|&&k| k == 1).count();
        let tens = keys.iter().filter(|&&k| k == 10).count();
        assert!(ones > 5 * tens, "{ones} vs {tens}");
        let mut u =
            Generator::new(Keys::Uniform, 10, "read=1,write=1".parse().unwrap(), 7, 3).unwrap();
        let writes = (0..n).filter(|_| u.op() == Op::Write).count() as f64 / n as f64;
        assert!((writes - 0.5).abs() < 0.02);
        let mut again = Generator::new(Keys::Uniform, 10, Mix::default(), 7, 3).unwrap();
        let mut same = Generator::new(Keys::Uniform, 10, Mix::default(), 7, 3).unwrap();
        assert!((0..100).all(|_| again.key() == same.key()));
    }
}
