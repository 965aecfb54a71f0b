//! `$(VAR)` expansion in command, args and env values, with the kubelet's rules
//! (`third_party/forked/golang/expansion`): `$$` is a literal `$`, `$(NAME)` is replaced
//! when NAME is defined and left as written when it is not, an unterminated `$(` is literal.

/// Expands `input` with `lookup`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.as_bytes().first() {
            Some(b'$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some(b'(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(_) | None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_table() {
        let vars = |n: &str| match n {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("$(A)".to_owned()),
            _ => None,
        };
        let table = [
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(A)$(A)", "alphaalpha"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$(EMPTY)", ""),
            ("$(A", "$(A"),
            ("cost $5", "cost $5"),
            ("trailing $", "trailing $"),
            ("$(NESTED)", "$(A)"),
            ("--name=$(A) --x=$(B)", "--name=alpha --x=$(B)"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(expand(input, &vars), want, "{input:?}");
        }
    }
}
