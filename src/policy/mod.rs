//! Stage 7, policy: flags events as IMSpector's filters would have (badwords,
//! ACL, blocked file transfers). It never blocks and never changes the text;
//! it sets `Event::filtered`, `Event::categories` and `Event::policy`, and
//! nothing else. It does no output.
//!
//! Categories (`Event::categories`, the JSON Lines/CSV form), in IMSpector's
//! filter order (acl, badwords, misc):
//! * `acl:<line>`: denied by the ACL rule on that 1-based line of the ACL
//!   file (a line number, not a rule number, so it can be found in the file);
//! * `badwords`: at least one bad word was counted (the count and positions
//!   are in `Event::policy.badword_spans`);
//! * `block_files`: a file event under `--block-files`.
//!
//! The IMSpector tree writes only what IMSpector wrote: `<n> badwords;`.
//!
//! Differences from IMSpector, all forced by watching passively: bad words
//! are matched on the decoded text (IMSpector scanned the raw protocol bytes,
//! markup included), and `filtered` is decided per event (IMSpector blocked a
//! whole protocol unit, so a sibling event of a blocked one was also marked).

pub mod acl;
pub mod badwords;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::event::{Event, Kind};

pub use acl::{Acl, Action};
pub use badwords::Badwords;

/// A policy file that cannot be used: which file, which line, why.
#[derive(Debug)]
pub struct PolicyError {
    pub path: PathBuf,
    /// 1-based line; `None` when the file could not be read at all.
    pub line: Option<u32>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The filters of one run.
#[derive(Debug, Default)]
pub struct Policy {
    pub badwords: Option<Badwords>,
    /// IMSpector's `badwords_block_count`: 0 never blocks.
    pub block_count: u32,
    pub acl: Option<Acl>,
    /// IMSpector's `block_files=on`.
    pub block_files: bool,
    /// Things the user should hear about that are not errors (e.g. bad-word
    /// lines after an empty line, which IMSpector ignored, and so do we).
    pub warnings: Vec<String>,
}

impl Policy {
    /// Loads the policy files. Bad files give an error naming file and line.
    pub fn load(
        badwords: Option<&Path>,
        block_count: u32,
        acl: Option<&Path>,
        block_files: bool,
    ) -> Result<Policy, PolicyError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| PolicyError {
                path: p.to_path_buf(),
                line: None,
                message: format!("cannot read: {e}"),
            })
        };
        let mut warnings = Vec::new();
        let badwords = match badwords {
            None => None,
            Some(p) => {
                let (list, notes) = Badwords::parse(&read(p)?, badwords::DEFAULT_REPLACE).map_err(
                    |(line, message)| PolicyError {
                        path: p.to_path_buf(),
                        line: Some(line),
                        message,
                    },
                )?;
                if let Some(l) = notes.ignored_after_line {
                    warnings.push(format!(
                        "{}:{}: empty line: the words after it are ignored, as IMSpector ignored them",
                        p.display(),
                        l
                    ));
                }
                Some(list)
            }
        };
        let acl = match acl {
            None => None,
            Some(p) => Some(
                Acl::parse(&read(p)?).map_err(|(line, message)| PolicyError {
                    path: p.to_path_buf(),
                    line: Some(line),
                    message,
                })?,
            ),
        };
        Ok(Policy {
            badwords,
            block_count,
            acl,
            block_files,
            warnings,
        })
    }

    /// True when no filter is configured (apply is then a no-op).
    pub fn is_empty(&self) -> bool {
        self.badwords.is_none() && self.acl.is_none() && !self.block_files
    }

    /// Flags one event as IMSpector's filters would have. The text is kept.
    pub fn apply(&self, ev: &mut Event) {
        if self.is_empty() {
            return;
        }
        if let Some(acl) = &self.acl {
            let local = ev.imspector_local_id();
            let remote = ev.imspector_remote_id();
            if let Some(rule) = acl.decide(&local, &remote) {
                if rule.action == Action::Deny {
                    let line = rule.line;
                    ev.policy.acl_deny_line = Some(line);
                    ev.filtered = true;
                    ev.categories.push(format!("acl:{line}"));
                }
            }
        }
        if let Some(words) = &self.badwords {
            // Only message text has a message extent in IMSpector; typing,
            // webcam and file events were not counted.
            if ev.kind == Kind::Message {
                if let Some(text) = &ev.text {
                    let spans = words.hits(text.as_bytes());
                    if !spans.is_empty() {
                        let n = spans.len();
                        ev.policy.badword_spans = spans;
                        ev.categories.push("badwords".to_string());
                        if self.block_count > 0 && n >= self.block_count as usize {
                            ev.filtered = true;
                        }
                    }
                }
            }
        }
        if self.block_files && ev.kind == Kind::File {
            ev.policy.file_blocked = true;
            ev.filtered = true;
            ev.categories.push("block_files".to_string());
        }
    }
}
