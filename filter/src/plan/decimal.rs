//! Exact decimal arithmetic on MySQL's text form of DECIMAL values, for merging SUM and AVG
//! across shards: `"-12.50"` is mantissa -1250 at scale 2.

/// A decimal number: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

/// Up to 38 digits fit an i128 exactly, which is MySQL's DECIMAL precision.
const MAX_SCALE: u32 = 38;

impl Decimal {
    /// Parses `-123.45`, `7`, `+0.5`; `None` for anything else (exponents, NaN) or a value
    /// beyond 38 digits.
    pub fn parse(text: &[u8]) -> Option<Decimal> {
        let text = std::str::from_utf8(text).ok()?.trim();
        let (negative, digits) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let scale = u32::try_from(frac.len()).ok()?;
        if scale > MAX_SCALE {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// This value at a larger scale (`None` on overflow or a smaller scale).
    pub fn rescale(self, scale: u32) -> Option<Decimal> {
        let up = scale.checked_sub(self.scale)?;
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(10i128.checked_pow(up)?)?,
            scale,
        })
    }

    /// Exact sum (`None` on overflow).
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    /// `self / count` at `scale` digits, rounded half away from zero as MySQL rounds
    /// decimal division.
    pub fn div_count(self, count: i128, scale: u32) -> Option<Decimal> {
        if count == 0 {
            return None;
        }
        let scale = scale.min(MAX_SCALE).max(self.scale);
        let n = self.rescale(scale)?.mantissa;
        let q = n / count;
        let r = n % count;
        let round = if r.checked_abs()?.checked_mul(2)? >= count.checked_abs()? {
            if (n < 0) != (count < 0) {
                -1
            } else {
                1
            }
        } else {
            0
        };
        Some(Decimal {
            mantissa: q + round,
            scale,
        })
    }

    /// MySQL's text form: `-0.50`, `12`, `0.0000`.
    pub fn to_text(self) -> String {
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let mut out = String::with_capacity(digits.len() + 3);
        if self.mantissa < 0 {
            out.push('-');
        }
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            out.push_str(&digits[..digits.len() - scale]);
            out.push('.');
            out.push_str(&digits[digits.len() - scale..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s.as_bytes()).unwrap_or(Decimal {
            mantissa: i128::MIN,
            scale: 0,
        })
    }

    #[test]
    fn parse_and_print() {
        for s in [
            "0",
            "-12.50",
            "0.0005",
            "123456789012345678901234567890",
            "-0.10",
        ] {
            assert_eq!(d(s).to_text(), s);
        }
        assert_eq!(Decimal::parse(b"1e3"), None);
        assert_eq!(Decimal::parse(b"."), None);
    }

    #[test]
    fn sums_align_scales() {
        assert_eq!(
            d("1.5").checked_add(d("2.25")).map(Decimal::to_text),
            Some("3.75".into())
        );
        assert_eq!(
            d("-3").checked_add(d("1")).map(Decimal::to_text),
            Some("-2".into())
        );
    }

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(
            d("10").div_count(3, 4).map(Decimal::to_text),
            Some("3.3333".into())
        );
        assert_eq!(
            d("20").div_count(3, 4).map(Decimal::to_text),
            Some("6.6667".into())
        );
        assert_eq!(
            d("-20").div_count(3, 4).map(Decimal::to_text),
            Some("-6.6667".into())
        );
        assert_eq!(
            d("5.00").div_count(2, 6).map(Decimal::to_text),
            Some("2.500000".into())
        );
        assert_eq!(d("1").div_count(0, 4), None);
    }
}
