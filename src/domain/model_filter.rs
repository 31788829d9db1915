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
    let entries: Vec<&str> = filter
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect();
    entries.is_empty() || entries.iter().any(|e| entry_matches(e, model))
}

fn entry_matches(entry: &str, model: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(stem) => {
            let stem = stem.to_ascii_lowercase();
            let model = model.to_ascii_lowercase();
            let bare = model.strip_prefix("local-").unwrap_or(&model);
            bare.starts_with(&stem) || model.starts_with(&stem)
        }
        None => entry == model,
    }
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
    fn examples_of_the_spec() {
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
