//! Policy from the outside: the spec's badwords and ACL examples on events,
//! block counts, blocked files, and errors for bad policy files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imscan::event::{Event, Kind, LocalId, Protocol};
use imscan::policy::Policy;
use imscan::time::Timestamp;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/imspector-examples")
}

fn event(protocol: Protocol, kind: Kind, local: &str, remote: &str, text: Option<&str>) -> Event {
    let a: SocketAddr = "10.0.0.5:1042".parse().unwrap();
    let b: SocketAddr = "10.0.0.1:1863".parse().unwrap();
    let mut e = Event::new(
        Timestamp::from_secs_nanos(1248087600, 0),
        protocol,
        kind,
        true,
        a,
        b,
    );
    e.local_id = LocalId::Known(local.into());
    e.remote_id = remote.into();
    e.text = text.map(str::to_string);
    e
}

fn applied(policy: &Policy, mut e: Event) -> Event {
    policy.apply(&mut e);
    e
}

fn badwords_only(block_count: u32) -> Policy {
    Policy::load(
        Some(&examples().join("badwords.txt")),
        block_count,
        None,
        false,
    )
    .unwrap()
}

#[test]
fn badwords_examples_from_the_spec() {
    let p = badwords_only(2);
    let msg = |t| {
        event(
            Protocol::Msn,
            Kind::Message,
            "alice@hotmail.com",
            "bob@hotmail.com",
            Some(t),
        )
    };

    // Censored but delivered: one hit, not filtered, original text kept.
    let e = applied(&p, msg("the darn build broke"));
    assert_eq!(e.categories, ["badwords"]);
    assert_eq!(e.policy.badword_hits(), 1);
    assert_eq!(e.policy.badword_spans, [(4, 8)]);
    assert!(!e.filtered);
    assert_eq!(e.text.as_deref(), Some("the darn build broke"));

    // Two hits reach block count 2: filtered.
    let e = applied(&p, msg("darn darn"));
    assert_eq!(e.policy.badword_hits(), 2);
    assert!(e.filtered);

    // `heck` buried inside `checker` is not counted.
    let e = applied(&p, msg("anyone tried the new borrow checker?"));
    assert!(e.categories.is_empty());
    assert!(!e.filtered);
    assert_eq!(e.policy.badword_hits(), 0);

    // The list is ordered longer-first: `darned` counts once, not twice.
    let e = applied(&p, msg("darned thing"));
    assert_eq!(e.policy.badword_spans, [(0, 6)]);

    // Entries with spaces; case-insensitive.
    let e = applied(&p, msg("you Son Of A Gun"));
    assert_eq!(e.policy.badword_spans, [(4, 16)]);
}

#[test]
fn block_count_zero_never_filters_and_counts_are_inclusive() {
    let msg = |t| event(Protocol::Irc, Kind::Message, "eve", "#rust", Some(t));
    let e = applied(&badwords_only(0), msg("frak frak frak heck"));
    assert_eq!(e.policy.badword_hits(), 4);
    assert!(!e.filtered);
    assert_eq!(e.categories, ["badwords"]);
    assert!(applied(&badwords_only(4), msg("frak frak frak heck")).filtered);
    assert!(!applied(&badwords_only(5), msg("frak frak frak heck")).filtered);
}

#[test]
fn badwords_only_look_at_message_text() {
    let p = badwords_only(1);
    for kind in [Kind::File, Kind::Typing, Kind::Webcam] {
        let mut e = event(Protocol::Yahoo, kind, "frank_y", "gina_y", Some("darn"));
        e.file_name = Some("darn.txt".into());
        let e = applied(&p, e);
        assert!(e.categories.is_empty() && !e.filtered, "{kind:?}");
    }
    let e = applied(
        &p,
        event(Protocol::Yahoo, Kind::Message, "frank_y", "gina_y", None),
    );
    assert!(e.categories.is_empty());
}

#[test]
fn acl_example_decisions() {
    let p = Policy::load(None, 0, Some(&examples().join("acl.txt")), false).unwrap();
    let msg = |proto, l: &str, r: &str| applied(&p, event(proto, Kind::Message, l, r, Some("hi")));

    // alice → bob: rule on line 5 allows.
    let e = msg(Protocol::Msn, "alice@hotmail.com", "bob@hotmail.com");
    assert!(!e.filtered && e.categories.is_empty());
    // alice → anyone under example.org: allowed by the same rule.
    assert!(!msg(Protocol::Msn, "alice@hotmail.com", "x@sub.example.org").filtered);
    // carol → dave: line 6 matches carol but not the remote; line 7 denies.
    let e = msg(Protocol::Xmpp, "carol@example.org", "dave@jabber.org");
    assert!(e.filtered);
    assert_eq!(e.categories, ["acl:7"]);
    assert_eq!(e.policy.acl_deny_line, Some(7));
    // carol in an MSN-style group chat: line 6 allows.
    assert!(!msg(Protocol::Msn, "carol@example.org", "groupchat-1248087600").filtered);
    // frank → gina and eve → #rust: nothing decides, allowed.
    assert!(!msg(Protocol::Yahoo, "frank_y", "gina_y").filtered);
    assert!(!msg(Protocol::Irc, "eve", "#rust").filtered);
    // Anyone → helpdesk allowed (line 8); anyone → mallory denied (line 9).
    assert!(!msg(Protocol::Msn, "zed@hotmail.com", "helpdesk@example.com").filtered);
    assert_eq!(
        msg(Protocol::Msn, "zed@hotmail.com", "mallory@evil.example").categories,
        ["acl:9"]
    );
}

#[test]
fn acl_matches_ids_as_imspector_normalised_them() {
    let p = Policy::load(None, 0, Some(&examples().join("acl.txt")), false).unwrap();
    // MSN ids are lower-cased before matching.
    let e = applied(
        &p,
        event(
            Protocol::Msn,
            Kind::Message,
            "Zed@Hotmail.com",
            "Mallory@Evil.Example",
            Some("x"),
        ),
    );
    assert!(e.filtered);
    // Jabber: the resource is cut, case is kept (so `Carol@…` is another user).
    let e = applied(
        &p,
        event(
            Protocol::Xmpp,
            Kind::Message,
            "carol@example.org/Home",
            "dave@jabber.org/Work",
            Some("x"),
        ),
    );
    assert_eq!(e.categories, ["acl:7"]);
    let e = applied(
        &p,
        event(
            Protocol::Xmpp,
            Kind::Message,
            "Carol@example.org",
            "dave@jabber.org",
            Some("x"),
        ),
    );
    assert!(!e.filtered);
}

#[test]
fn all_filters_run_and_categories_keep_filter_order() {
    let dir = examples();
    let p = Policy::load(
        Some(&dir.join("badwords.txt")),
        1,
        Some(&dir.join("acl.txt")),
        true,
    )
    .unwrap();
    // Denied by the ACL, and badwords still counts (no short-circuit).
    let e = applied(
        &p,
        event(
            Protocol::Xmpp,
            Kind::Message,
            "carol@example.org",
            "dave@jabber.org",
            Some("frak"),
        ),
    );
    assert_eq!(e.categories, ["acl:7", "badwords"]);
    assert!(e.filtered);
    // A denied file transfer under --block-files.
    let mut f = event(
        Protocol::Xmpp,
        Kind::File,
        "carol@example.org",
        "dave@jabber.org",
        None,
    );
    f.file_name = Some("notes.txt".into());
    let e = applied(&p, f);
    assert_eq!(e.categories, ["acl:7", "block_files"]);
    assert!(e.policy.file_blocked);
}

#[test]
fn block_files_filters_file_events_only() {
    let p = Policy::load(None, 0, None, true).unwrap();
    let e = applied(&p, event(Protocol::Msn, Kind::File, "a", "b", None));
    assert!(e.filtered);
    assert_eq!(e.categories, ["block_files"]);
    for kind in [Kind::Message, Kind::Typing, Kind::Webcam] {
        assert!(!applied(&p, event(Protocol::Msn, kind, "a", "b", Some("x"))).filtered);
    }
}

#[test]
fn no_policy_changes_nothing() {
    let p = Policy::load(None, 0, None, false).unwrap();
    assert!(p.is_empty());
    let before = event(Protocol::Msn, Kind::File, "a", "b", Some("darn"));
    assert_eq!(applied(&p, before.clone()), before);
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_policy_files_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let acl = write_tmp(tmp.path(), "site.acl", b"# ok\nallow alice bob\nalow all\n");
    let err = Policy::load(None, 0, Some(&acl), false).unwrap_err();
    assert_eq!(err.path, acl);
    assert_eq!(err.line, Some(3));
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:3: ", acl.display())),
        "{shown}"
    );
    assert!(shown.contains("alow"), "{shown}");

    let words = write_tmp(tmp.path(), "words.txt", b"\nfrak\n");
    let err = Policy::load(Some(&words), 0, None, false).unwrap_err();
    assert_eq!((err.path.as_path(), err.line), (words.as_path(), Some(1)));

    let missing = tmp.path().join("missing.acl");
    let err = Policy::load(None, 0, Some(&missing), false).unwrap_err();
    assert_eq!(err.line, None);
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
}

#[test]
fn ignored_bad_words_are_reported_as_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let words = write_tmp(tmp.path(), "words.txt", b"frak\n\nheck\n");
    let p = Policy::load(Some(&words), 0, None, false).unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].starts_with(&format!("{}:2: ", words.display())),
        "{}",
        p.warnings[0]
    );
    // ...and `heck` is indeed not used, as in IMSpector.
    let e = applied(
        &p,
        event(Protocol::Irc, Kind::Message, "eve", "bob", Some("heck")),
    );
    assert!(e.categories.is_empty());
}
