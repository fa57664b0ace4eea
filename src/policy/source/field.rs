//! Field paths such as `spec.profiles.log-shipper.loki.args[3]`, and the line of a YAML
//! document each is on: what puts `file:line` on a problem found after parsing.

/// One step of a field path: a key or a sequence index.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `spec.profiles.log-shipper.loki.args[3]`, `env[0].value`, `annotations["a.b/c"]` as steps.
fn steps(field: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut key = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => steps.extend((!key.is_empty()).then(|| Step::Key(std::mem::take(&mut key)))),
            '[' => {
                steps.extend((!key.is_empty()).then(|| Step::Key(std::mem::take(&mut key))));
                let mut inside = String::new();
                for c in chars.by_ref() {
                    if c == ']'
                        && !(inside.starts_with('"')
                            && (inside.len() < 2 || !inside.ends_with('"')))
                    {
                        break;
                    }
                    inside.push(c);
                }
                match inside.parse() {
                    Ok(index) => steps.push(Step::Index(index)),
                    Err(_) => steps.push(Step::Key(inside.trim_matches('"').to_string())),
                }
            }
            c => key.push(c),
        }
    }
    steps.extend((!key.is_empty()).then_some(Step::Key(key)));
    steps
}

/// Where `key:` starts in `line` as a mapping key (plain or quoted, block or flow style).
fn key_position(line: &str, key: &str) -> Option<usize> {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .filter_map(|pattern| {
        line.match_indices(pattern.as_str())
            .find(|(at, found)| {
                let before = line[..*at].chars().next_back();
                let after = line[at + found.len()..].chars().next();
                before.is_none_or(|c| matches!(c, ' ' | '\t' | '{' | ',' | '-'))
                    && after.is_none_or(char::is_whitespace)
            })
            .map(|(at, found)| at + found.len())
    })
    .min()
}

/// The line of item `index` of the flow sequence opening at `lines[line][column]`.
fn flow_item(lines: &[&str], line: usize, column: usize, index: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut item = 0;
    let mut quote: Option<char> = None;
    for (i, text) in lines.iter().enumerate().skip(line) {
        let text = if i == line { &text[column..] } else { text };
        let mut chars = text.chars();
        let mut previous: Option<char> = None;
        while let Some(c) = chars.next() {
            let after_blank = previous.is_none_or(char::is_whitespace);
            previous = Some(c);
            if let Some(q) = quote {
                if c == '\\' && q == '"' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            if depth == 1 && item == index && !c.is_whitespace() && c != ',' && c != ']' {
                return Some(i);
            }
            match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                }
                ',' if depth == 1 => item += 1,
                '#' if after_blank => break,
                _ => {}
            }
        }
    }
    None
}

/// The line of item `index` of the block sequence below `lines[line]`.
fn block_item(lines: &[&str], line: usize, index: usize) -> Option<usize> {
    let mut indent = None;
    let mut item = 0;
    for (i, text) in lines.iter().enumerate().skip(line + 1) {
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = text.len() - trimmed.len();
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if is_item => indent = Some(at),
            None => return None,
            Some(level) if at < level || (at == level && !is_item) => return None,
            Some(_) => {}
        }
        if is_item && indent == Some(at) {
            if item == index {
                return Some(i);
            }
            item += 1;
        }
    }
    None
}

/// 1-based line of `field` (a path such as `spec.selector.pods.matchExpressions[1].operator`)
/// in `text`, following the keys and sequence items in order: a reader's search, not a YAML
/// parse, but good enough to point at the line. When part of the path is not found, the
/// line of the deepest part that is; `None` when not even the first is.
pub(super) fn line_of(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The line found so far, and where on it the value of the last key starts.
    let mut at: Option<(usize, usize)> = None;
    for step in steps(field) {
        let next = match step {
            Step::Key(key) => (at.map_or(0, |(line, _)| line)..lines.len())
                .find_map(|i| Some((i, key_position(lines[i], &key)?))),
            Step::Index(index) => at.and_then(|(line, value)| {
                // A flow sequence on the key's line, or a block sequence below it.
                let rest = &lines[line][value..];
                let item = match rest.trim_start().starts_with('[') {
                    true => flow_item(&lines, line, value + rest.find('[')?, index),
                    false => block_item(&lines, line, index),
                };
                item.map(|line| (line, 0))
            }),
        };
        match next {
            Some(found) => at = Some(found),
            None => break,
        }
    }
    at.map(|(line, _)| line + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_follows_nested_keys() {
        let text = "spec:\n  profiles:\n    log-shipper:\n      loki:\n        image: x\n        args: [a]\n";
        assert_eq!(
            line_of(text, "spec.profiles.log-shipper.loki.args[0]"),
            Some(6)
        );
        assert_eq!(
            line_of(text, "spec.defaults"),
            Some(1),
            "the deepest part found"
        );
        assert_eq!(line_of(text, "metadata.name"), None);
    }

    #[test]
    fn line_of_finds_sequence_items() {
        let text = r#"spec:
  selector:
    pods:
      matchExpressions:
        - key: app
          operator: Exists
        - {key: tier, operator: Equals, values: [web]}
  profiles:
    log-shipper:
      loki:
        args: ["-i", "tail",
               "-p", "a, b", '[c]',
               "{{nope}}"]
        command:
        - one
        # a comment
        - two
        env:
          - name: A
            value: x
          - name: B
            value: "{{nope}}"
        annotations:
          prometheus.io/port: "{{nope}}"
"#;
        for (field, line) in [
            ("spec.selector.pods.matchExpressions[0].operator", 6),
            ("spec.selector.pods.matchExpressions[1].operator", 7),
            ("spec.profiles.log-shipper.loki.args[1]", 11),
            ("spec.profiles.log-shipper.loki.args[4]", 12),
            ("spec.profiles.log-shipper.loki.args[5]", 13),
            ("spec.profiles.log-shipper.loki.command[1]", 17),
            ("spec.profiles.log-shipper.loki.env[1].value", 22),
            (
                "spec.profiles.log-shipper.loki.annotations[\"prometheus.io/port\"]",
                24,
            ),
        ] {
            assert_eq!(line_of(text, field), Some(line), "{field}");
        }
    }

    #[test]
    fn steps_split_keys_indices_and_quoted_keys() {
        assert_eq!(
            steps(r#"a.b[2].c["x.y/z"]"#),
            [
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Index(2),
                Step::Key("c".into()),
                Step::Key("x.y/z".into())
            ]
        );
    }
}
