//! Which task models a worker serves (`SUPPORTED_MODELS`).
//!
//! An entry ending in `*` is a family: it matches a label that, after an
//! optional `local-` prefix, starts with the stem, case-insensitively. An
//! entry without `*` matches exactly. No entries match everything, and a
//! task without a model matches any worker.

pub fn model_matches(filter: &[String], model: Option<&str>) -> bool {
    let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
        return true;
    };
    let rules = rules(filter);
    rules.is_empty() || rules.iter().any(|r| r.matches(model))
}

/// One entry of a filter. The claim query applies the same rules in SQL
/// (`store::tasks::next_claimable`), so that tasks a worker cannot run cost
/// an index step each, not a query each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `stem*`: the label, lowercased, starts with `stem` (lowercase) or
    /// with `local-` and `stem`.
    Family(String),
    /// An entry without `*`: the label, trimmed, is exactly this.
    Exact(String),
}

impl Rule {
    fn matches(&self, model: &str) -> bool {
        match self {
            Rule::Family(stem) => {
                let model = model.to_ascii_lowercase();
                model.starts_with(stem.as_str())
                    || model
                        .strip_prefix("local-")
                        .is_some_and(|bare| bare.starts_with(stem.as_str()))
            }
            Rule::Exact(label) => model == label,
        }
    }
}

/// The rules of a filter; none means every model passes.
pub fn rules(filter: &[String]) -> Vec<Rule> {
    filter
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| match e.strip_suffix('*') {
            Some(stem) => Rule::Family(stem.to_ascii_lowercase()),
            None => Rule::Exact(e.to_string()),
        })
        .collect()
}

/// Splits a comma-separated `SUPPORTED_MODELS` value.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Vec<String> {
        parse_list(s)
    }

    #[test]
    fn the_documented_examples() {
        let table: &[(&str, &str, bool)] = &[
            ("minimax*", "minimax-m2", true),
            ("minimax*", "minimax2.7", true),
            ("minimax*", "MiniMax-M2", true),
            ("minimax*", "local-minimax-m2", true),
            ("qwen*", "qwen3.6", true),
            ("qwen*", "local-qwen3.6-coder", true),
            ("gemma*", "gemma4", true),
            ("gemma*", "local-gemma4", true),
            ("gpt-*", "gpt-5", true),
            ("gpt-*", "gpt-4o-mini", true),
            ("gpt-*", "gpt5", false),
            ("qwen*", "gemma4", false),
            ("minimax*", "mini", false),
            ("gemma4", "gemma4", true),
            ("gemma4", "local-gemma4", false),
            ("gemma4", "Gemma4", false),
            ("qwen*,gemma*", "gemma4", true),
            ("qwen*, gemma*", "local-qwen3.6-coder", true),
            ("local-*", "local-anything", true),
        ];
        for (filter, model, want) in table {
            assert_eq!(
                model_matches(&f(filter), Some(model)),
                *want,
                "{filter} vs {model}"
            );
        }
    }

    #[test]
    fn empty_filter_and_no_model() {
        assert!(model_matches(&[], Some("anything")));
        assert!(model_matches(&f(" , "), Some("anything")));
        assert!(model_matches(&f("qwen*"), None));
        assert!(model_matches(&f("qwen*"), Some("")));
    }
}
