//! The `model_prices` setting: what a model's tokens cost when its CLI
//! does not say, in USD per million tokens, per model family.
//!
//! Written as a JSON object of families, each with its input and output
//! price: `{"gpt-5": {"input": 1.25, "output": 10}, "claude-sonnet":
//! {"input": 3, "output": 15}}`. A model takes the price of the longest
//! family its name starts with (case-insensitive), its provider prefix
//! (`anthropic/…`, `openai/…`) left aside.

/// One family's prices, USD per million tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    pub family: String,
    pub input: f64,
    pub output: f64,
}

/// The largest price accepted per million tokens: far above any real one,
/// low enough that a typo of a few digits is refused.
const MAX_PRICE: f64 = 10_000.0;

/// Reads the setting; the error says what is wrong and where.
pub fn parse(raw: &str) -> Result<Vec<Price>, String> {
    let value: serde_json::Value = serde_json::from_str(raw.trim())
        .map_err(|e| format!("expected a JSON object of model families: {e}"))?;
    let Some(families) = value.as_object() else {
        return Err(
            r#"expected a JSON object such as {"gpt-5": {"input": 1.25, "output": 10}}"#.into(),
        );
    };
    let mut prices = Vec::with_capacity(families.len());
    for (family, p) in families {
        let family = family.trim().to_ascii_lowercase();
        if family.is_empty() || family.len() > 100 {
            return Err("a model family must be 1 to 100 characters".into());
        }
        let price = |key: &str| -> Result<f64, String> {
            match p.get(key).and_then(serde_json::Value::as_f64) {
                Some(v) if (0.0..=MAX_PRICE).contains(&v) => Ok(v),
                Some(v) => Err(format!("{family}.{key}: {v} is outside 0..={MAX_PRICE}")),
                None => Err(format!(
                    "{family} needs \"{key}\": a number of USD per million tokens"
                )),
            }
        };
        if let Some(extra) = p.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["input", "output"].contains(&k.as_str()))
        }) {
            return Err(format!(
                "{family}: unknown field \"{extra}\" (input, output)"
            ));
        }
        prices.push(Price {
            input: price("input")?,
            output: price("output")?,
            family,
        });
    }
    Ok(prices)
}

/// The price of `model`: the longest family it starts with.
pub fn of<'a>(prices: &'a [Price], model: &str) -> Option<&'a Price> {
    let model = model.trim().to_ascii_lowercase();
    let bare = model.rsplit('/').next().unwrap_or(&model);
    prices
        .iter()
        .filter(|p| bare.starts_with(&p.family) || model.starts_with(&p.family))
        .max_by_key(|p| p.family.len())
}

/// What `tokens_in` and `tokens_out` cost at `price`.
pub fn cost(price: &Price, tokens_in: i64, tokens_out: i64) -> f64 {
    (tokens_in as f64 * price.input + tokens_out as f64 * price.output) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_families_and_refuses_what_is_wrong() {
        let p = parse(r#"{"GPT-5": {"input": 1.25, "output": 10}, "gpt-5-mini": {"input": 0.25, "output": 2}}"#)
            .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(parse("{}").unwrap(), vec![]);
        for bad in [
            "[]",
            "nope",
            r#"{"gpt-5": {"input": 1}}"#,
            r#"{"gpt-5": {"input": -1, "output": 1}}"#,
            r#"{"gpt-5": {"input": "1", "output": 1}}"#,
            r#"{"gpt-5": {"input": 1, "output": 1, "cache": 1}}"#,
            r#"{"": {"input": 1, "output": 1}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_model_takes_its_longest_family() {
        let p = parse(r#"{"gpt-5": {"input": 1.25, "output": 10}, "gpt-5-mini": {"input": 0.25, "output": 2}, "claude": {"input": 3, "output": 15}}"#).unwrap();
        assert_eq!(of(&p, "gpt-5-mini-2025").unwrap().family, "gpt-5-mini");
        assert_eq!(of(&p, "GPT-5-codex").unwrap().family, "gpt-5");
        assert_eq!(
            of(&p, "anthropic/claude-sonnet-4").unwrap().family,
            "claude"
        );
        assert!(of(&p, "llama-3").is_none());
        let c = cost(of(&p, "gpt-5").unwrap(), 1_000_000, 100_000);
        assert!((c - 2.25).abs() < 1e-9, "{c}");
    }
}
