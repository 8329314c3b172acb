//! Kubernetes resource quantities (`"250m"`, `"1.5"`, `"512Mi"`, `"2G"`, `"1e3"`).
//!
//! Parsed exactly with integer arithmetic so that `"0.1"` CPU is 100 millicores, not
//! 99.999...; a float round-trip would make bin-packing disagree with the kubelet.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

fn err(input: &str, reason: &'static str) -> QuantityError {
    QuantityError {
        input: input.chars().take(64).collect(),
        reason,
    }
}

/// Parses a quantity and returns it multiplied by `scale` (1000 for millicores, 1 for
/// bytes and counts), rounded up as Kubernetes rounds requests.
pub fn parse_scaled(input: &str, scale: i128) -> Result<i64, QuantityError> {
    // No trimming: the API server rejects " 5" too.
    let s = input;
    if s.is_empty() {
        return Err(err(input, "empty"));
    }
    let (sign, body) = match s.as_bytes()[0] {
        b'-' => (-1i128, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(num_end);
    if num.is_empty() || num == "." {
        return Err(err(input, "no number"));
    }
    let mut parts = num.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next().unwrap_or("");
    if frac_part.contains('.') {
        return Err(err(input, "more than one decimal point"));
    }
    if int_part.len() + frac_part.len() > 30 {
        return Err(err(input, "too many digits"));
    }
    // value = mantissa / 10^frac_digits * multiplier
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err(input, "bad digits"))?
    };
    let mut num_pow10: i32 = -(frac_part.len() as i32);
    let mut binary: i128 = 1;
    match suffix {
        "" => {}
        "m" => num_pow10 -= 3,
        "k" => num_pow10 += 3,
        "M" => num_pow10 += 6,
        "G" => num_pow10 += 9,
        "T" => num_pow10 += 12,
        "P" => num_pow10 += 15,
        "E" => num_pow10 += 18,
        "Ki" => binary = 1 << 10,
        "Mi" => binary = 1 << 20,
        "Gi" => binary = 1 << 30,
        "Ti" => binary = 1 << 40,
        "Pi" => binary = 1 << 50,
        "Ei" => binary = 1 << 60,
        _ if suffix.starts_with(['e', 'E']) => {
            let exp: i32 = suffix[1..]
                .parse()
                .map_err(|_| err(input, "bad exponent"))?;
            if !(-30..=30).contains(&exp) {
                return Err(err(input, "exponent out of range"));
            }
            num_pow10 += exp;
        }
        _ => return Err(err(input, "unknown suffix")),
    }
    let mut value = mantissa
        .checked_mul(binary)
        .and_then(|v| v.checked_mul(scale))
        .ok_or_else(|| err(input, "too large"))?;
    if num_pow10 >= 0 {
        for _ in 0..num_pow10 {
            value = value
                .checked_mul(10)
                .ok_or_else(|| err(input, "too large"))?;
        }
    } else {
        // Round up: a request of 0.0001 CPU still takes a millicore (and anything
        // below 10^-38 of a unit is still more than nothing).
        value = match 10i128.checked_pow((-num_pow10) as u32) {
            Some(div) => (value + div - 1) / div,
            None => i128::from(value > 0),
        };
    }
    let value = sign * value;
    i64::try_from(value).map_err(|_| err(input, "too large"))
}

/// CPU quantity in millicores.
pub fn parse_cpu_milli(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 1000)
}

/// Memory/storage/count quantity in base units (bytes or items).
pub fn parse_units(input: &str) -> Result<i64, QuantityError> {
    parse_scaled(input, 1)
}

/// A quantity of resource `name` in the unit `Resources` keeps it in: millicores for
/// `cpu`, base units for everything else.
pub fn parse_resource(name: &str, input: &str) -> Result<i64, QuantityError> {
    if name == "cpu" {
        parse_cpu_milli(input)
    } else {
        parse_units(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_notation() {
        assert_eq!(parse_cpu_milli("250m"), Ok(250));
        assert_eq!(parse_cpu_milli("1.5"), Ok(1500));
        assert_eq!(parse_cpu_milli("0.1"), Ok(100));
        assert_eq!(parse_cpu_milli("2"), Ok(2000));
        assert!(parse_cpu_milli("100u").is_err());
        assert_eq!(parse_units("512Mi"), Ok(512 << 20));
        assert_eq!(parse_units("2G"), Ok(2_000_000_000));
        assert_eq!(parse_units("1e3"), Ok(1000));
        assert_eq!(parse_units("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_units("1k"), Ok(1000));
        assert_eq!(parse_cpu_milli("1e-30"), Ok(1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "Mi",
            "1.2.3",
            "12x",
            "--1",
            "1e999",
            "99999999999999999999999Ei",
        ] {
            assert!(parse_units(bad).is_err(), "{bad} should fail");
        }
    }
}
