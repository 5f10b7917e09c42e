//! Topic and group names: 1 to 255 bytes of `A-Z a-z 0-9 . _ -`, so they are safe in file
//! names, SQL identifiers (after quoting), metrics labels and logs.

/// The longest name.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a name; the error says what is wrong with it.
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().all(|c| c == '.') {
        // "." and ".." would name the data directory or its parent as a topic's log.
        return Err(format!(
            "{kind} name '{name}' is only dots; add a letter or digit"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{kind} name '{name}' contains {c:?}; use A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_explains_refusals() {
        assert!(validate("topic", "orders.v1-eu_2").is_ok());
        assert!(validate("topic", "..").unwrap_err().contains("only dots"));
        assert!(validate("topic", ".").is_err());
        assert_eq!(validate("topic", ""), Err("topic name is empty".into()));
        assert!(validate("group", "a b").unwrap_err().contains("' '"));
        assert!(
            validate("topic", &"x".repeat(256))
                .unwrap_err()
                .contains("limit is 255")
        );
    }
}
