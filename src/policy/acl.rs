//! IMSpector's ACL: its rule syntax and first-match semantics
//! (imspector-format.md §7.2). It decides allow/deny for a (local, remote)
//! id pair; it knows nothing about events or output.

/// `allow` or `deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// One rule: `allow|deny <localid>|all [<remote> ... | groupchat]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line in the ACL file (what `acl:<line>` categories name).
    pub line: u32,
    pub action: Action,
    /// `None` for the keyword `all`.
    pub local: Option<String>,
    /// Empty: the rule decides on the local part alone.
    pub remotes: Vec<String>,
}

/// A loaded ACL, rules in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub rules: Vec<Rule>,
}

impl Acl {
    /// Parses an ACL file. IMSpector skipped lines it could not use; imscan
    /// refuses them instead, naming the line, because a rule that silently
    /// does nothing changes what an investigator believes was blocked:
    /// a first word other than `allow`/`deny` (this includes a `#` that is
    /// not in column 0), a tab anywhere (IMSpector did not treat tabs as
    /// separators, so the rule named ids that never occur), a rule without
    /// a local part, an empty token (two
    /// spaces in a row, a trailing space: IMSpector made an empty id of it),
    /// a CR (a CRLF file: IMSpector kept the CR in the last id, so the rule
    /// never matched), or a file without any rule (IMSpector disabled the
    /// ACL). Empty lines and lines starting with `#` are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Acl, (u32, String)> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            (line_u32(line), "not valid UTF-8".to_string())
        })?;
        let mut rules = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = line_u32(i + 1);
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            if raw.contains('\r') {
                return Err((line, "contains a CR (save the file with LF line ends); IMSpector kept the CR in the last id, so this rule never matched".into()));
            }
            if raw.contains('\t') {
                return Err((line, "contains a tab: tokens are separated by single spaces (IMSpector kept the tab inside the word)".into()));
            }
            let tokens: Vec<&str> = raw.split(' ').collect();
            let action = match tokens[0] {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                w => {
                    return Err((
                        line,
                        format!(
                            "expected `allow` or `deny` followed by a single space, found {:?}",
                            w
                        ),
                    ))
                }
            };
            if tokens.len() < 2 {
                return Err((line, "rule without a local id (`all` or an id)".into()));
            }
            if let Some(pos) = tokens.iter().position(|t| t.is_empty()) {
                let what = if pos == tokens.len() - 1 {
                    "trailing space"
                } else {
                    "two spaces in a row"
                };
                return Err((
                    line,
                    format!("{what}: tokens are separated by single spaces (IMSpector made an empty id of this)"),
                ));
            }
            let local = match tokens[1] {
                "all" => None,
                id => Some(id.to_string()),
            };
            rules.push(Rule {
                line,
                action,
                local,
                remotes: tokens[2..].iter().map(|s| s.to_string()).collect(),
            });
        }
        if rules.is_empty() {
            return Err((
                1,
                "no rule in the file (IMSpector disabled an empty ACL)".into(),
            ));
        }
        Ok(Acl { rules })
    }

    /// The rule that decides for (local, remote), first match wins; `None`
    /// when no rule decides (the event is allowed).
    pub fn decide(&self, local: &str, remote: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            let local_ok = r.local.as_deref().map_or(true, |p| id_matches(p, local));
            local_ok
                && (r.remotes.is_empty()
                    || r.remotes.iter().any(|p| {
                        (p == "groupchat" && remote.starts_with("groupchat-"))
                            || id_matches(p, remote)
                    }))
        })
    }
}

fn line_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// IMSpector's id match of pattern `p` against id `id`: `id` ends with `p`
/// and either equals it, or the byte before the suffix is `@` or `.`, or
/// (a quirk kept on purpose) `id` is exactly one byte longer than `p`.
/// Case-sensitive.
pub fn id_matches(p: &str, id: &str) -> bool {
    let (p, id) = (p.as_bytes(), id.as_bytes());
    if !id.ends_with(p) {
        return false;
    }
    let extra = id.len() - p.len();
    extra == 0 || extra == 1 || matches!(id[extra - 1], b'@' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "allow sales@hotmail.com client@hotmail.com company.com\nallow admin@company.com\nallow all support@company.com\ndeny all\n";

    fn decide_line(acl: &Acl, l: &str, r: &str) -> Option<(Action, u32)> {
        acl.decide(l, r).map(|r| (r.action, r.line))
    }

    #[test]
    fn spec_sample_semantics() {
        let acl = Acl::parse(SAMPLE.as_bytes()).unwrap();
        use Action::*;
        assert_eq!(
            decide_line(&acl, "sales@hotmail.com", "client@hotmail.com"),
            Some((Allow, 1))
        );
        assert_eq!(
            decide_line(&acl, "sales@hotmail.com", "bob@company.com"),
            Some((Allow, 1))
        );
        assert_eq!(
            decide_line(&acl, "sales@hotmail.com", "x.company.com"),
            Some((Allow, 1))
        );
        assert_eq!(
            decide_line(&acl, "sales@hotmail.com", "eve@other.com"),
            Some((Deny, 4))
        );
        assert_eq!(
            decide_line(&acl, "admin@company.com", "anyone@else.org"),
            Some((Allow, 2))
        );
        assert_eq!(
            decide_line(&acl, "joe@hotmail.com", "support@company.com"),
            Some((Allow, 3))
        );
        assert_eq!(
            decide_line(&acl, "joe@hotmail.com", "friend@hotmail.com"),
            Some((Deny, 4))
        );
    }

    #[test]
    fn no_match_means_allowed_by_default() {
        let acl = Acl::parse(b"deny alice bob\n").unwrap();
        assert_eq!(acl.decide("alice", "carol"), None);
        assert_eq!(
            acl.decide("alice", "bob").map(|r| r.action),
            Some(Action::Deny)
        );
    }

    #[test]
    fn id_match_rules_and_quirks() {
        assert!(id_matches("company.com", "bob@company.com"));
        assert!(id_matches("company.com", "x.company.com"));
        assert!(id_matches("com", "bob@company.com"));
        assert!(!id_matches("company.com", "evilcompany.com"));
        assert!(id_matches("bob", "bob"));
        // One extra leading byte matches whatever it is.
        assert!(id_matches("bob", "xbob"));
        assert!(!id_matches("bob", "xxbob"));
        // Case-sensitive.
        assert!(!id_matches("Bob", "bob"));
    }

    #[test]
    fn groupchat_keyword_matches_only_msn_group_ids() {
        let acl = Acl::parse(b"deny all groupchat\n").unwrap();
        assert!(acl.decide("alice", "groupchat-1248087600").is_some());
        assert!(acl.decide("eve", "#rust").is_none());
        // ...and also id-matches normally.
        assert!(acl.decide("eve", "xgroupchat").is_some());
    }

    #[test]
    fn comments_and_empty_lines_are_skipped_and_lines_numbered() {
        let acl = Acl::parse(b"# c\n\nallow a b\n#x\ndeny all\n").unwrap();
        assert_eq!(acl.rules.len(), 2);
        assert_eq!(acl.rules[0].line, 3);
        assert_eq!(acl.rules[1].line, 5);
        assert_eq!(acl.rules[1].local, None);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let cases: [(&[u8], u32, &str); 9] = [
            (b"allow a\npermit a\n", 2, "expected `allow`"),
            (b"allow a\n deny a\n", 2, "expected `allow`"),
            (b"allow\ta\n", 1, "tab"),
            (b"deny all\tbob\n", 1, "tab"),
            (b"deny\n", 1, "without a local id"),
            (b"deny a  b\n", 1, "two spaces"),
            (b"deny a \n", 1, "trailing space"),
            (b"allow a b\r\n", 1, "CR"),
            (b"# only comments\n\n", 1, "no rule"),
        ];
        for (file, line, needle) in cases {
            let err = Acl::parse(file).unwrap_err();
            assert_eq!(err.0, line, "{:?}", String::from_utf8_lossy(file));
            assert!(
                err.1.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(file),
                err.1
            );
        }
        let err = Acl::parse(b"allow a\nallow \xff\n").unwrap_err();
        assert_eq!(err, (2, "not valid UTF-8".to_string()));
    }
}
